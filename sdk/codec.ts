import { TaskInputError } from "./errors.js";

/**
 * The wire codec for arguments, outputs and results. Both executors use it, so a value
 * that works locally works deployed: JSON values, `undefined`, and `Date` survive; anything
 * else (functions, symbols, BigInt, NaN/Infinity, cycles, class instances) is refused with
 * a {@link TaskInputError} naming the path of the bad value.
 *
 * An encoded value is a string: `J` + plain JSON when nothing needed tagging (decoded with a
 * bare `JSON.parse`), or `T` + JSON whose special values are tagged objects.
 */
export type EncodedValue = string;

const TAG = "$nt";

interface EncodeState {
  tagged: boolean;
  seen: Set<object>;
}

/** Encodes `value`; throws {@link TaskInputError} naming `path` and below. */
export function encodeValue(value: unknown, path: string): EncodedValue {
  const state: EncodeState = { tagged: false, seen: new Set() };
  const tree = toWire(value, path, state);
  return (state.tagged ? "T" : "J") + JSON.stringify(tree);
}

/** Decodes what {@link encodeValue} made; every call returns a fresh copy. */
export function decodeValue(encoded: EncodedValue): unknown {
  const body = encoded.slice(1);
  if (encoded.charCodeAt(0) === 74 /* J */) return JSON.parse(body);
  if (encoded.charCodeAt(0) === 84 /* T */) return fromWire(JSON.parse(body));
  throw new TaskInputError("value", "not a value made by the numerous-tasks codec");
}

/** Whether `text` is in the codec's form (`J` or `T` first), without decoding it. */
export function isEncodedValue(text: string): boolean {
  const first = text.charCodeAt(0);
  return first === 74 /* J */ || first === 84 /* T */;
}

function toWire(value: unknown, path: string, state: EncodeState): unknown {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (!Number.isFinite(value)) {
        throw new TaskInputError(path, `${value} is not a finite number and cannot be carried`);
      }
      return value;
    case "undefined":
      state.tagged = true;
      return { [TAG]: "u" };
    case "bigint":
      throw new TaskInputError(path, "a BigInt cannot be carried; pass it as a string");
    case "symbol":
      throw new TaskInputError(path, "a symbol cannot be carried");
    case "function":
      throw new TaskInputError(
        path,
        `a function${value.name ? ` (${value.name})` : ""} cannot be carried; pass data, not code`,
      );
  }
  if (value === null) return null;
  const object = value as object;
  if (state.seen.has(object)) {
    throw new TaskInputError(path, "a cycle: this object contains itself");
  }
  if (Array.isArray(object)) {
    state.seen.add(object);
    const out = new Array<unknown>(object.length);
    for (let i = 0; i < object.length; i++) out[i] = toWire(object[i], `${path}[${i}]`, state);
    state.seen.delete(object);
    return out;
  }
  if (object instanceof Date) {
    const time = object.getTime();
    if (Number.isNaN(time)) throw new TaskInputError(path, "an invalid Date cannot be carried");
    state.tagged = true;
    return { [TAG]: "d", v: time };
  }
  const proto = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    const kind = (proto as { constructor?: { name?: string } }).constructor?.name || "object";
    throw new TaskInputError(
      path,
      `an instance of ${kind} cannot be carried; pass a plain object, array, string, number, boolean, null or Date`,
    );
  }
  if (Object.getOwnPropertySymbols(object).length > 0) {
    throw new TaskInputError(path, "an object with symbol keys cannot be carried");
  }
  state.seen.add(object);
  // No prototype: an own "__proto__" key stays data instead of hitting the inherited setter.
  const out: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(object)) {
    out[key] = toWire((object as Record<string, unknown>)[key], propertyPath(path, key), state);
  }
  state.seen.delete(object);
  if (TAG in out) {
    // A user key that looks like our tag is wrapped so decoding cannot misread it.
    state.tagged = true;
    return { [TAG]: "o", v: out };
  }
  return out;
}

function fromWire(tree: unknown): unknown {
  if (tree === null || typeof tree !== "object") return tree;
  if (Array.isArray(tree)) {
    for (let i = 0; i < tree.length; i++) tree[i] = fromWire(tree[i]);
    return tree;
  }
  const object = tree as Record<string, unknown>;
  const tag = object[TAG];
  if (tag === "u") return undefined;
  if (tag === "d") return new Date(object.v as number);
  const target = tag === "o" ? (object.v as Record<string, unknown>) : object;
  for (const key of Object.keys(target)) target[key] = fromWire(target[key]);
  return target;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

function propertyPath(path: string, key: string): string {
  return IDENTIFIER.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}
