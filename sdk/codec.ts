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
  /** The arrays and objects being encoded, outermost first: a cycle is one met again. */
  readonly open: object[];
}

/**
 * A refusal found below the top: keys are collected on the way out (innermost first) so no
 * path string is built for values that encode fine.
 */
class Refusal {
  readonly keys: Array<string | number> = [];
  constructor(readonly reason: string) {}
}

/** Encodes `value`; throws {@link TaskInputError} naming `path` and below. */
export function encodeValue(value: unknown, path: string): EncodedValue {
  // Most argument lists and results are flat: strings, numbers, booleans, null. They need no
  // walk, no tag and no copy; JSON.stringify writes them exactly as the walk would.
  if (typeof value === "number" && Number.isFinite(value)) return `J${value}`; // as JSON writes it
  if (isFlat(value)) return `J${JSON.stringify(value)}`;
  const state: EncodeState = { tagged: false, open: [] };
  let tree: unknown;
  try {
    tree = toWire(value, state);
  } catch (thrown) {
    if (!(thrown instanceof Refusal)) throw thrown;
    let at = path;
    for (let i = thrown.keys.length - 1; i >= 0; i--) at = keyPath(at, thrown.keys[i] as string | number);
    throw new TaskInputError(at, thrown.reason);
  }
  return (state.tagged ? "T" : "J") + JSON.stringify(tree);
}

/** A JSON primitive (finite number), or a plain array of them (a subclass may have a toJSON). */
function isFlat(value: unknown): boolean {
  if (isJsonPrimitive(value)) return true;
  if (!Array.isArray(value) || Object.getPrototypeOf(value) !== Array.prototype) return false;
  for (let i = 0; i < value.length; i++) if (!isJsonPrimitive(value[i])) return false;
  return true;
}

function isJsonPrimitive(value: unknown): boolean {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value);
    default:
      return value === null;
  }
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

function toWire(value: unknown, state: EncodeState): unknown {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (!Number.isFinite(value)) throw new Refusal(`${value} is not a finite number and cannot be carried`);
      return value;
    case "undefined":
      state.tagged = true;
      return { [TAG]: "u" };
    case "bigint":
      throw new Refusal("a BigInt cannot be carried; pass it as a string");
    case "symbol":
      throw new Refusal("a symbol cannot be carried");
    case "function":
      throw new Refusal(
        `a function${value.name ? ` (${value.name})` : ""} cannot be carried; pass data, not code`,
      );
  }
  if (value === null) return null;
  const object = value as object;
  if (state.open.includes(object)) throw new Refusal("a cycle: this object contains itself");
  if (Array.isArray(object)) {
    state.open.push(object);
    const out = new Array<unknown>(object.length);
    let i = 0;
    try {
      for (; i < object.length; i++) out[i] = toWire(object[i], state);
    } catch (thrown) {
      if (thrown instanceof Refusal) thrown.keys.push(i);
      throw thrown;
    }
    state.open.pop();
    return out;
  }
  if (object instanceof Date) {
    const time = object.getTime();
    if (Number.isNaN(time)) throw new Refusal("an invalid Date cannot be carried");
    state.tagged = true;
    return { [TAG]: "d", v: time };
  }
  const proto = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    const kind = (proto as { constructor?: { name?: string } }).constructor?.name || "object";
    throw new Refusal(
      `an instance of ${kind} cannot be carried; pass a plain object, array, string, number, boolean, null or Date`,
    );
  }
  if (Object.getOwnPropertySymbols(object).length > 0) {
    throw new Refusal("an object with symbol keys cannot be carried");
  }
  state.open.push(object);
  // No prototype: an own "__proto__" key stays data instead of hitting the inherited setter.
  const out: Record<string, unknown> = Object.create(null);
  let key = "";
  try {
    for (key of Object.keys(object)) out[key] = toWire((object as Record<string, unknown>)[key], state);
  } catch (thrown) {
    if (thrown instanceof Refusal) thrown.keys.push(key);
    throw thrown;
  }
  state.open.pop();
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

function keyPath(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  return IDENTIFIER.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}
