import {
  ExecutorConfigError,
  ExecutorUnavailableError,
  LocalExecutor,
  NoTaskContextError,
  TaskCancelledError,
  TaskError,
  TaskFailedError,
  TaskInputError,
  TaskNotFoundError,
  TaskStatus,
  TaskTimeoutError,
  getTaskController,
  isTaskError,
  listTaskDefinitions,
  listTaskInstances,
  loadConfig,
  setExecutor,
  task,
  waitForCompletion,
} from "numerous-tasks";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { errorFromWire, errorToWire } from "../executor-platform/protocol/wire.js";
import { type TaskErrorInfo, errorForFailure, toErrorInfo } from "../sdk/errors.js";

type ProgressKind = "negative" | "above one" | "NaN" | "Infinity" | "string";

function badProgress(kind: ProgressKind): unknown {
  switch (kind) {
    case "negative":
      return -0.1;
    case "above one":
      return 1.5;
    case "NaN":
      return Number.NaN;
    case "Infinity":
      return Number.POSITIVE_INFINITY;
    case "string":
      return "0.5";
  }
}

type OutputKind = "array" | "class instance" | "Date" | "object containing a function" | "null";

function badOutput(kind: OutputKind): unknown {
  switch (kind) {
    case "array":
      return [1, 2];
    case "class instance":
      return new (class Thing {
        value = 1;
      })();
    case "Date":
      return new Date(0);
    case "object containing a function":
      return { callback: () => 1 };
    case "null":
      return null;
  }
}

function describeThrown(error: unknown) {
  return {
    name: error instanceof Error ? error.name : typeof error,
    isRangeError: error instanceof RangeError,
    isTaskInputError: error instanceof TaskInputError,
    path: error instanceof TaskInputError ? error.path : undefined,
    message: error instanceof Error ? error.message : String(error),
  };
}

const echoInput = task(function badInputEcho(...args: unknown[]) {
  return args;
});

const progressCaught = task(function badInputProgressCaught(kind: ProgressKind) {
  const controller = getTaskController();
  controller.setProgress(0.25);
  try {
    controller.setProgress(badProgress(kind) as number);
  } catch (error) {
    return describeThrown(error);
  }
  return { name: "nothing thrown" };
});

const progressUncaught = task(async function badInputProgressUncaught(kind: ProgressKind) {
  await Promise.resolve();
  getTaskController().setProgress(badProgress(kind) as number);
  return "unreachable";
});

const outputCaught = task(function badInputOutputCaught(kind: OutputKind) {
  const controller = getTaskController();
  controller.setOutput({ before: true });
  try {
    controller.setOutput(badOutput(kind) as Record<string, unknown>);
  } catch (error) {
    return describeThrown(error);
  }
  return { name: "nothing thrown" };
});

const outputUncaught = task(function badInputOutputUncaught(kind: OutputKind) {
  getTaskController().setOutput(badOutput(kind) as Record<string, unknown>);
  return "unreachable";
});

const throwsNonError = task(async function badInputThrowsNonError(kind: "string" | "undefined" | "number") {
  await Promise.resolve();
  if (kind === "string") throw "a plain string";
  if (kind === "number") throw 42;
  throw undefined;
});

let executor: LocalExecutor;

beforeEach(() => {
  executor = new LocalExecutor({ concurrency: 2 });
  setExecutor(executor);
});

afterEach(async () => {
  await executor.close();
});

async function expectNoInstances(): Promise<void> {
  expect(await listTaskInstances()).toStrictEqual([]);
}

async function expectNoneStuck(): Promise<void> {
  const active = await listTaskInstances({ status: [TaskStatus.Pending, TaskStatus.Running] });
  expect(active.map((instance) => `${instance.taskName} ${instance.status}`)).toStrictEqual([]);
}

describe("defining tasks", () => {
  it("throws TypeError for an anonymous function with no name", async () => {
    const before = await listTaskDefinitions();
    expect(() => task(() => 1)).toThrow(TypeError);
    expect(() => task({}, () => 1)).toThrow(TypeError);
    expect(() => task({ name: "   " }, () => 1)).toThrow(TypeError);
    const nameless = [() => 1] as const;
    expect(() => task(nameless[0])).toThrow(/name/);
    expect(await listTaskDefinitions()).toStrictEqual(before);
    await expectNoInstances();
  });

  it("throws TypeError for something that is not a function", () => {
    expect(() => task("compute" as unknown as () => void)).toThrow(TypeError);
    expect(() => task({ name: "badInputNotAFunction" }, undefined as unknown as () => void)).toThrow(
      TypeError,
    );
  });

  it("throws TypeError for two different functions with one name in one synchronous run", async () => {
    const first = task({ name: "badInputDuplicate" }, function first() {
      return "first";
    });
    expect(() =>
      task({ name: "badInputDuplicate" }, function second() {
        return "second";
      }),
    ).toThrow(TypeError);
    expect(() => task({ name: "badInputDuplicate" }, () => "third")).toThrow(/badInputDuplicate/);
    await expectNoInstances();
    // The first definition stays in force.
    await expect(first().wait()).resolves.toBe("first");
    await expectNoneStuck();
  });

  it("accepts defining the same function twice", async () => {
    function badInputSameTwice(value: number) {
      return value + 1;
    }
    const once = task(badInputSameTwice);
    const twice = task(badInputSameTwice);
    expect(twice.definition).toStrictEqual(once.definition);
    await expect(twice(1).wait()).resolves.toBe(2);
    await expect(once(2).wait()).resolves.toBe(3);
    const definitions = await listTaskDefinitions();
    expect(definitions.filter((definition) => definition.name === "badInputSameTwice")).toHaveLength(1);
  });
});

describe("arguments the codec cannot carry", () => {
  const cycle: Record<string, unknown> = { name: "loop" };
  cycle.self = cycle;
  class Point {
    constructor(
      readonly x: number,
      readonly y: number,
    ) {}
  }

  it.each([
    { what: "a function", args: [{ when: () => new Date() }], path: "args[0].when" },
    { what: "a symbol", args: [Symbol("s")], path: "args[0]" },
    { what: "a BigInt", args: [{ total: 10n }], path: "args[0].total" },
    { what: "a cycle", args: [cycle], path: "args[0].self" },
    { what: "a class instance", args: [1, { at: new Point(1, 2) }], path: "args[1].at" },
    { what: "a Map", args: [new Map([["a", 1]])], path: "args[0]" },
    { what: "an Error", args: [new Error("not data")], path: "args[0]" },
    { what: "NaN", args: [1, Number.NaN], path: "args[1]" },
    { what: "Infinity", args: [{ list: [1, Number.POSITIVE_INFINITY] }], path: "args[0].list[1]" },
    { what: "an invalid Date", args: [{ when: new Date("not a date") }], path: "args[0].when" },
    { what: "a key that is not an identifier", args: [{ "odd key": () => 1 }], path: 'args[0]["odd key"]' },
  ])("throws TaskInputError synchronously for $what, naming $path", async ({ args, path }) => {
    let thrown: unknown;
    try {
      echoInput(...args);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TaskInputError);
    expect(thrown).toBeInstanceOf(TaskError);
    const error = thrown as TaskInputError;
    expect(error.path).toBe(path);
    expect(error.message).toContain(path);
    expect(error.code).toBe("TASK_INPUT");
    expect(error.name).toBe("TaskInputError");
    await expectNoInstances();
  });

  it("names the class of a class instance", () => {
    expect(() => echoInput(new Point(1, 2))).toThrow(/Point/);
  });
});

describe("the controller refuses bad reports", () => {
  it.each<ProgressKind>(["negative", "above one", "NaN", "Infinity", "string"])(
    "setProgress(%s) throws RangeError that the task can catch and go on",
    async (kind) => {
      const instance = progressCaught(kind);
      await expect(instance.wait()).resolves.toMatchObject({ name: "RangeError", isRangeError: true });
      expect(instance.status).toBe(TaskStatus.Completed);
      await expectNoneStuck();
    },
  );

  it.each<ProgressKind>(["negative", "above one", "NaN", "Infinity", "string"])(
    "setProgress(%s) left uncaught fails the instance with the RangeError",
    async (kind) => {
      const instance = progressUncaught(kind);
      const error = await instance.wait().catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(TaskFailedError);
      expect(((error as TaskFailedError).cause as Error).name).toBe("RangeError");
      expect(instance.status).toBe(TaskStatus.Failed);
      expect(instance.error?.name).toBe("RangeError");
      await expectNoneStuck();
    },
  );

  it("never lets a refused progress reach the instance", async () => {
    const instance = progressCaught("above one");
    const seen: number[] = [instance.progress];
    instance.onChange((changed) => seen.push(changed.progress));
    await instance.wait();
    expect(seen).toContain(0.25);
    expect(seen.every((progress) => progress >= 0 && progress <= 1)).toBe(true);
  });

  it.each<{ kind: OutputKind; path?: string }>([
    { kind: "array" },
    { kind: "class instance" },
    { kind: "Date" },
    { kind: "null" },
    { kind: "object containing a function", path: "output.callback" },
  ])("setOutput with $kind throws TaskInputError and keeps the previous output", async ({ kind, path }) => {
    const instance = outputCaught(kind);
    const caught = await instance.wait();
    expect(caught).toMatchObject({ name: "TaskInputError", isTaskInputError: true });
    if (path !== undefined) expect(caught).toMatchObject({ path });
    expect(instance.status).toBe(TaskStatus.Completed);
    expect(instance.output).toStrictEqual({ before: true });
    await expectNoneStuck();
  });

  it("setOutput with a bad value, left uncaught, fails the instance with TaskInputError info", async () => {
    const instance = outputUncaught("object containing a function");
    const error = await instance.wait().catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(TaskFailedError);
    expect(instance.status).toBe(TaskStatus.Failed);
    expect(instance.error).toMatchObject({ name: "TaskInputError", code: "TASK_INPUT" });
    expect(instance.error?.message).toContain("output.callback");
    await expectNoneStuck();
  });
});

describe("misuse outside a task", () => {
  it("getTaskController() outside a task throws NoTaskContextError", async () => {
    expect(() => getTaskController()).toThrow(NoTaskContextError);
    await Promise.resolve();
    expect(() => getTaskController()).toThrow(NoTaskContextError);
    await expectNoInstances();
  });

  it("waitForCompletion of an unknown id rejects with TaskNotFoundError", async () => {
    const error = await waitForCompletion("badInputNoSuchId").catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(TaskNotFoundError);
    expect(error).toMatchObject({ code: "TASK_NOT_FOUND", instanceId: "badInputNoSuchId" });
    await expectNoInstances();
  });
});

describe("configuration", () => {
  it("a misspelt NUMEROUS_EXECUTOR throws ExecutorConfigError listing the valid values", async () => {
    let thrown: unknown;
    try {
      loadConfig({ NUMEROUS_EXECUTOR: "plattform" });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ExecutorConfigError);
    const error = thrown as ExecutorConfigError;
    expect(error.code).toBe("EXECUTOR_CONFIG");
    expect(error.variable).toBe("NUMEROUS_EXECUTOR");
    expect(error.value).toBe("plattform");
    for (const valid of [
      "local",
      "platform",
      "NUMEROUS_LOCAL_EXECUTOR",
      "NUMEROUS_PLATFORM_EXECUTOR",
      "plattform",
    ]) {
      expect(error.message).toContain(valid);
    }
    expect(() => loadConfig({ NUMEROUS_EXECUTOR: "Local" })).toThrow(ExecutorConfigError);
    await expectNoInstances();
  });

  it.each(["0", "abc", "-2", "1.5"])("NUMEROUS_TASK_CONCURRENCY=%s throws ExecutorConfigError", (value) => {
    let thrown: unknown;
    try {
      loadConfig({ NUMEROUS_TASK_CONCURRENCY: value });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ExecutorConfigError);
    expect(thrown).toMatchObject({ variable: "NUMEROUS_TASK_CONCURRENCY", value });
    expect((thrown as Error).message).toContain("NUMEROUS_TASK_CONCURRENCY");
  });

  it("accepts both spellings of each executor", () => {
    expect(loadConfig({ NUMEROUS_EXECUTOR: "platform" }).executor).toBe("platform");
    expect(loadConfig({ NUMEROUS_EXECUTOR: "NUMEROUS_PLATFORM_EXECUTOR" }).executor).toBe("platform");
    expect(loadConfig({ NUMEROUS_EXECUTOR: "local" }).executor).toBe("local");
    expect(loadConfig({ NUMEROUS_EXECUTOR: "NUMEROUS_LOCAL_EXECUTOR" }).executor).toBe("local");
  });
});

describe("tasks that throw something other than an Error", () => {
  it.each(["string", "undefined", "number"] as const)(
    "throwing a %s fails the instance, not stuck",
    async (kind) => {
      const instance = throwsNonError(kind);
      const error = await waitForCompletion(instance).catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(TaskFailedError);
      expect(instance.status).toBe(TaskStatus.Failed);
      expect(instance.isDone()).toBe(true);
      expect(instance.error?.message).toContain(
        kind === "string" ? "a plain string" : kind === "number" ? "42" : "undefined",
      );
      await expectNoneStuck();
    },
  );
});

describe("error classes", () => {
  const info = {
    name: "RangeError",
    message: "out of range",
    stack: "RangeError: out of range\n    at somewhere",
  };
  it.each([
    { error: new TaskFailedError("i1", info), name: "TaskFailedError", code: "TASK_FAILED" },
    { error: new TaskCancelledError("i1"), name: "TaskCancelledError", code: "TASK_CANCELLED" },
    { error: new TaskTimeoutError("i1", 50), name: "TaskTimeoutError", code: "TASK_TIMEOUT" },
    { error: new TaskNotFoundError("i1"), name: "TaskNotFoundError", code: "TASK_NOT_FOUND" },
    { error: new NoTaskContextError(), name: "NoTaskContextError", code: "NO_TASK_CONTEXT" },
    { error: new TaskInputError("args[0]", "bad"), name: "TaskInputError", code: "TASK_INPUT" },
    {
      error: new ExecutorConfigError("NUMEROUS_EXECUTOR", "x", "bad"),
      name: "ExecutorConfigError",
      code: "EXECUTOR_CONFIG",
    },
    {
      error: new ExecutorUnavailableError("127.0.0.1:7777", "connection refused"),
      name: "ExecutorUnavailableError",
      code: "EXECUTOR_UNAVAILABLE",
    },
  ])("$name has its name, a stable code, and is a TaskError", ({ error, name, code }) => {
    expect(error.name).toBe(name);
    expect(error.code).toBe(code);
    expect(error).toBeInstanceOf(TaskError);
    expect(error).toBeInstanceOf(Error);
    expect(isTaskError(error)).toBe(true);
    expect(error.message.length).toBeGreaterThan(0);
    expect(String(error)).toContain(name);
  });

  it("TaskFailedError carries the original error as cause", () => {
    const error = new TaskFailedError("i1", info);
    const cause = error.cause as Error;
    expect(cause).toBeInstanceOf(Error);
    expect(cause.name).toBe("RangeError");
    expect(cause.message).toBe("out of range");
    expect(cause.stack).toBe(info.stack);
    expect(error.error).toStrictEqual(info);
  });

  it.each([
    {
      thrown: new ExecutorUnavailableError("unix:/tmp/a is unavailable: b.sock", "connection refused"),
      fields: { address: "unix:/tmp/a is unavailable: b.sock" },
    },
    {
      thrown: new ExecutorConfigError("NUMEROUS_TASK_CONCURRENCY", "0", "expected a whole number"),
      fields: { variable: "NUMEROUS_TASK_CONCURRENCY", value: "0" },
    },
    {
      thrown: new ExecutorConfigError("NUMEROUS_API_ACCESS_TOKEN", undefined, "the daemon refused the call"),
      fields: { variable: "NUMEROUS_API_ACCESS_TOKEN", value: undefined },
    },
  ])(
    "$thrown.name comes back from its record, through the wire too, with its fields and message",
    ({ thrown, fields }) => {
      const record = toErrorInfo(thrown);
      const overWire: TaskErrorInfo = errorFromWire(errorToWire(record));
      expect(overWire).toStrictEqual(record);
      for (const info of [record, overWire]) {
        const rebuilt = errorForFailure("i1", info);
        expect(rebuilt).toBeInstanceOf(thrown.constructor);
        expect(rebuilt).toMatchObject({ ...fields, code: thrown.code, message: thrown.message });
      }
    },
  );

  it("a plain error's record crosses the wire unchanged, with nothing added", () => {
    const record = toErrorInfo(new RangeError("out of range"));
    expect(errorFromWire(errorToWire(record))).toStrictEqual(record);
    expect(Object.keys(record).sort()).toEqual(["message", "name", "stack"]);
  });

  it("instanceof holds for errors of another copy of the package (a workload's runner beside the app's)", async () => {
    // The build is the copy a workload's runner uses; these tests import the source.
    const other = (await import(
      new URL("../dist/sdk/errors.js", import.meta.url).href
    )) as typeof import("../sdk/errors.js");
    expect(other.TaskInputError).not.toBe(TaskInputError);
    const input = new other.TaskInputError("output", "bad");
    expect(input).toBeInstanceOf(TaskInputError);
    expect(input).toBeInstanceOf(TaskError);
    expect(isTaskError(input)).toBe(true);
    expect(input).not.toBeInstanceOf(NoTaskContextError);
    expect(new other.NoTaskContextError()).toBeInstanceOf(NoTaskContextError);
    expect(new TaskCancelledError("i1")).toBeInstanceOf(other.TaskCancelledError);
    expect(new TaskCancelledError("i1")).not.toBeInstanceOf(other.TaskFailedError);
    // A class of the app's own that shares a name is not one of ours.
    class TaskFailedLookalike extends Error {}
    Object.defineProperty(TaskFailedLookalike, "name", { value: "TaskFailedError" });
    expect(new TaskFailedLookalike()).not.toBeInstanceOf(TaskFailedError);
  });

  it("isTaskError accepts anything", () => {
    for (const value of [undefined, null, "TaskError", new Error("plain"), { code: "TASK_FAILED" }]) {
      expect(isTaskError(value)).toBe(false);
    }
  });
});
