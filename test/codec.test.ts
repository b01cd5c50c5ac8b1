import { TaskError, TaskInputError, decodeValue, encodeValue } from "numerous-tasks";
import { describe, expect, it } from "vitest";

function roundTrip(value: unknown): unknown {
  return decodeValue(encodeValue(value, "value"));
}

function inputErrorOf(value: unknown, path: string): TaskInputError {
  let thrown: unknown;
  try {
    encodeValue(value, path);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(TaskInputError);
  return thrown as TaskInputError;
}

describe("codec round trips", () => {
  it.each([
    ["a string", 'héllo ✓ \u0000 "quoted"'],
    ["an empty string", ""],
    ["an integer", 42],
    ["a negative fraction", -0.125],
    ["the largest safe integer", Number.MAX_SAFE_INTEGER],
    ["a tiny number", 5e-324],
    ["true", true],
    ["false", false],
    ["null", null],
    ["undefined", undefined],
    ["a Date", new Date("2024-02-29T12:34:56.789Z")],
    ["the epoch", new Date(0)],
    ["a date before the epoch", new Date(-86_400_000)],
    ["an empty array", []],
    ["an empty object", {}],
    ["an array with undefined", [undefined, 1, undefined]],
    ["an object with an undefined property", { present: 1, missing: undefined }],
    [
      "nested structures",
      {
        list: [1, "two", { three: [3, null, new Date(3)] }],
        deep: { deeper: { deepest: [[[]], {}, [{ at: new Date(9) }]] } },
      },
    ],
    ["keys that are not identifiers", { "with space": 1, "": 2, "0": 3, "a.b": { "[x]": 4 } }],
    ["the argument list shape", [1, { when: new Date(5) }, undefined]],
  ])("%s", (_what, value) => {
    const encoded = encodeValue(value, "value");
    expect(typeof encoded).toBe("string");
    expect(decodeValue(encoded)).toStrictEqual(value);
  });

  it("keeps objects that use the reserved key $nt as data", () => {
    for (const value of [
      { $nt: "u" },
      { $nt: "d", v: 0 },
      { $nt: "o", v: { $nt: "u" } },
      { $nt: 1, other: undefined },
      {
        nested: [
          { $nt: "d", v: 5 },
          { $nt: "u", when: new Date(7) },
        ],
      },
      [{ $nt: "u" }],
      { $nt: { $nt: "u" } },
    ]) {
      expect(roundTrip(value)).toStrictEqual(value);
    }
  });

  it("keeps strings that look like encodings as strings", () => {
    for (const value of ['J{"a":1}', 'T{"$nt":"u"}', "$nt", "J", "T"]) expect(roundTrip(value)).toBe(value);
  });

  it("decodes a fresh copy every time", () => {
    const encoded = encodeValue({ list: [1], when: new Date(1) }, "value");
    const first = decodeValue(encoded) as { list: number[]; when: Date };
    first.list.push(2);
    first.when.setTime(2);
    expect(decodeValue(encoded)).toStrictEqual({ list: [1], when: new Date(1) });
  });

  it("carries an object reached twice without a cycle", () => {
    const shared = { id: 1 };
    expect(roundTrip({ a: shared, b: [shared, shared] })).toStrictEqual({
      a: { id: 1 },
      b: [{ id: 1 }, { id: 1 }],
    });
  });

  it("carries an object without a prototype as a plain object", () => {
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1, b: { c: 2 } });
    expect(roundTrip(bare)).toEqual({ a: 1, b: { c: 2 } });
  });

  it("keeps an own __proto__ key as data: an own property, never the prototype", () => {
    // What JSON.parse makes of a request body such as {"__proto__": {...}}.
    const parsed = JSON.parse('{"__proto__": {"admin": true}, "name": "x"}') as Record<string, unknown>;
    const expectKeptAsData = (decoded: unknown) => {
      expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
      expect(Object.keys(decoded as object)).toStrictEqual(["__proto__", "name"]);
      expect(Object.getOwnPropertyDescriptor(decoded, "__proto__")?.value).toStrictEqual({ admin: true });
      expect((decoded as { admin?: unknown }).admin).toBeUndefined();
      expect(({} as { admin?: unknown }).admin).toBeUndefined();
    };
    expectKeptAsData(roundTrip(parsed));
    // The same through the tagged form (an undefined beside it), and deeper down.
    const tagged = JSON.parse('{"__proto__": {"admin": true}, "name": "x"}') as Record<string, unknown>;
    tagged.missing = undefined;
    const decodedTagged = roundTrip(tagged) as Record<string, unknown>;
    expect(Object.keys(decodedTagged)).toStrictEqual(["__proto__", "name", "missing"]);
    expect(Object.getOwnPropertyDescriptor(decodedTagged, "__proto__")?.value).toStrictEqual({ admin: true });
    expect(Object.getPrototypeOf(decodedTagged)).toBe(Object.prototype);
    const deep = roundTrip({ list: [parsed], at: new Date(0) }) as { list: unknown[] };
    expectKeptAsData(deep.list[0]);
  });
});

describe("codec refusals name the path of the bad value", () => {
  class Point {
    x = 1;
  }
  const cycle: Record<string, unknown> = {};
  cycle.inner = { back: cycle };
  const arrayCycle: unknown[] = [1];
  arrayCycle.push([arrayCycle]);

  it.each([
    { what: "a function", value: { when: () => 1 }, base: "args", path: "args.when" },
    {
      what: "a named function",
      value: [function compute() {}],
      base: "args",
      path: "args[0]",
      says: "compute",
    },
    { what: "a symbol", value: { s: Symbol("x") }, base: "args", path: "args.s" },
    { what: "a BigInt", value: [[1n]], base: "args", path: "args[0][0]", says: "BigInt" },
    { what: "NaN", value: Number.NaN, base: "result", path: "result", says: "NaN" },
    { what: "-Infinity", value: { n: Number.NEGATIVE_INFINITY }, base: "output", path: "output.n" },
    { what: "a cycle through an object", value: cycle, base: "args", path: "args.inner.back", says: "cycle" },
    { what: "a cycle through an array", value: arrayCycle, base: "args", path: "args[1][0]", says: "cycle" },
    { what: "a class instance", value: { p: new Point() }, base: "args", path: "args.p", says: "Point" },
    { what: "a Map", value: [new Map()], base: "args", path: "args[0]", says: "Map" },
    { what: "a Set", value: { s: new Set([1]) }, base: "args", path: "args.s", says: "Set" },
    { what: "a RegExp", value: { r: /x/ }, base: "args", path: "args.r" },
    { what: "a typed array", value: { bytes: new Uint8Array(2) }, base: "args", path: "args.bytes" },
    { what: "a boxed string", value: { s: new String("x") }, base: "args", path: "args.s" },
    { what: "an Error", value: { e: new Error("x") }, base: "args", path: "args.e" },
    { what: "an invalid Date", value: { d: new Date(Number.NaN) }, base: "args", path: "args.d" },
    { what: "a symbol key", value: { [Symbol("k")]: 1 }, base: "args", path: "args" },
    { what: "a key that needs quoting", value: { "my-key": () => 1 }, base: "args", path: 'args["my-key"]' },
    {
      what: "a quoted key under an index",
      value: [{ 'say "hi"': Symbol() }],
      base: "args",
      path: 'args[0]["say \\"hi\\""]',
    },
  ])("$what at $path", ({ value, base, path, says }) => {
    const error = inputErrorOf(value, base);
    expect(error.path).toBe(path);
    expect(error.message.startsWith(`${path}: `)).toBe(true);
    if (says !== undefined) expect(error.message).toContain(says);
    expect(error).toBeInstanceOf(TaskError);
    expect(error.code).toBe("TASK_INPUT");
  });

  it("refuses what it did not make", () => {
    expect(() => decodeValue("not an encoding")).toThrow(TaskInputError);
  });
});
