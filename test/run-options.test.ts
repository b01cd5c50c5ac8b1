/**
 * Bad run options (SPEC §4): each is refused at the call with a `TaskInputError` that names the
 * option, and nothing reaches the executor.
 */
import {
  type Executor,
  type InstanceSnapshot,
  type SubmitRequest,
  TaskInputError,
  runTask,
  setExecutor,
  task,
} from "numerous-tasks";
import { beforeEach, describe, expect, it } from "vitest";

/** An executor that only counts what reaches it. */
function countingExecutor(): Executor & { submitted: SubmitRequest[] } {
  const submitted: SubmitRequest[] = [];
  return {
    submitted,
    submit(request): InstanceSnapshot {
      submitted.push(request);
      return {
        id: request.id,
        taskId: request.taskId,
        taskName: request.taskName,
        status: "pending",
        progress: 0,
        createdAt: request.createdAt,
        revision: 1,
      };
    },
    get: async () => undefined,
    list: async () => ({ instances: [] }),
    listDefinitions: async () => [],
    stop: async () => false,
    watch: () => () => {},
    close: async () => {},
  };
}

let executor: ReturnType<typeof countingExecutor>;

beforeEach(() => {
  executor = countingExecutor();
  setExecutor(executor);
});

/** `call` throws a TaskInputError naming `option` (its `path`, and the message's start). */
function expectRefused(call: () => unknown, option: string): TaskInputError {
  let thrown: unknown;
  try {
    call();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `a TaskInputError naming ${option}`).toBeInstanceOf(TaskInputError);
  const error = thrown as TaskInputError;
  expect(error.code).toBe("TASK_INPUT");
  expect(error.path).toBe(option);
  expect(error.message.startsWith(`${option}: `)).toBe(true);
  return error;
}

const charge = task(function chargeForOptions(customer: string, cents: number) {
  return `${customer} ${cents}`;
});

describe("run options refused at the call", () => {
  it("refuses an unknown option, of a task, a call, runTask, retry or concurrency, listing the known ones", () => {
    const unknown = expectRefused(
      () => task({ name: "withRetries", retries: 3 } as never, () => 1),
      "retries",
    );
    expect(unknown.message).toContain("retry");
    expectRefused(() => charge.with({ delay: 5 } as never), "delay");
    expectRefused(() => charge.with({ concurrency: { limit: 1 } } as never), "concurrency");
    expectRefused(() => charge.with({ retry: { maxAttempt: 3 } } as never), "maxAttempt");
    expectRefused(() => runTask("chargeForOptions", ["c", 1], { priorty: 1 } as never), "priorty");
    expectRefused(
      () => task({ name: "withConcurrencyTypo", concurrency: { limt: 1 } } as never, () => 1),
      "limt",
    );
    expectRefused(() => charge.with(null as never), "options");
    expect(executor.submitted).toHaveLength(0);
  });

  it("refuses negative and non-finite numbers, and whole numbers that are not", () => {
    const bad: Array<[() => unknown, string]> = [
      [() => charge.with({ delayMs: -1 }), "delayMs"],
      [() => charge.with({ delayMs: Number.NaN }), "delayMs"],
      [() => charge.with({ delayMs: Number.POSITIVE_INFINITY }), "delayMs"],
      [() => charge.with({ timeoutMs: -5 }), "timeoutMs"],
      [() => charge.with({ timeoutMs: 0 }), "timeoutMs"],
      [() => charge.with({ timeoutMs: Number.POSITIVE_INFINITY }), "timeoutMs"],
      [() => charge.with({ priority: 1.5 }), "priority"],
      [() => charge.with({ priority: Number.NaN }), "priority"],
      [() => charge.with({ startAt: new Date(Number.NaN) }), "startAt"],
      [() => charge.with({ startAt: -1 }), "startAt"],
      [() => charge.with({ retry: { maxAttempts: 0 } }), "retry.maxAttempts"],
      [() => charge.with({ retry: { maxAttempts: 2.5 } }), "retry.maxAttempts"],
      [() => charge.with({ retry: { maxAttempts: Number.POSITIVE_INFINITY } }), "retry.maxAttempts"],
      [() => charge.with({ retry: { initialDelayMs: -1 } }), "retry.initialDelayMs"],
      [() => charge.with({ retry: { maxDelayMs: Number.NaN } }), "retry.maxDelayMs"],
      [() => runTask("chargeForOptions", ["c", 1], { delayMs: -100 }), "delayMs"],
      [() => task({ name: "negativeTimeout", timeoutMs: -1 }, () => 1), "timeoutMs"],
      [
        () => task({ name: "infiniteDelay", retry: { initialDelayMs: Number.NaN } }, () => 1),
        "retry.initialDelayMs",
      ],
      [() => task({ name: "zeroLimit", concurrency: { limit: 0 } }, () => 1), "concurrency.limit"],
      [
        () => task({ name: "negativeKeyLimit", concurrency: { key: () => "k", perKeyLimit: -1 } }, () => 1),
        "concurrency.perKeyLimit",
      ],
    ];
    for (const [call, option] of bad) expectRefused(call, option);
    expect(executor.submitted).toHaveLength(0);
  });

  it("refuses a call whose concurrency key function throws or gives no key, saying why", () => {
    const perCustomer = task(
      {
        name: "perCustomerForOptions",
        concurrency: {
          key: (customer: string) => {
            if (customer === "") throw new Error("no customer given");
            return customer === "blank" ? "  " : customer;
          },
          perKeyLimit: 1,
        },
      },
      function perCustomerForOptions(customer: string) {
        return customer;
      },
    );
    const threw = expectRefused(() => perCustomer(""), "concurrency.key");
    expect(threw.message).toContain("no customer given");
    expectRefused(() => perCustomer("blank"), "concurrency.key");
    expectRefused(() => perCustomer.with({ priority: 1 })(""), "concurrency.key");
    expect(executor.submitted).toHaveLength(0);
    // A good key goes through.
    perCustomer("c-42");
    expect(executor.submitted.map((request) => request.spec?.concurrencyKey)).toStrictEqual(["c-42"]);
  });

  it("refuses an empty or blank idempotency key", () => {
    expectRefused(() => charge.with({ idempotencyKey: "" }), "idempotencyKey");
    expectRefused(() => charge.with({ idempotencyKey: "   " }), "idempotencyKey");
    expectRefused(() => runTask("chargeForOptions", ["c", 1], { idempotencyKey: "" }), "idempotencyKey");
    expectRefused(() => charge.with({ idempotencyKey: 42 as never }), "idempotencyKey");
    expect(executor.submitted).toHaveLength(0);
  });

  it("refuses delayMs and startAt together", () => {
    expectRefused(() => charge.with({ delayMs: 10, startAt: new Date() }), "delayMs");
    expect(executor.submitted).toHaveLength(0);
  });
});

describe("run options that pass", () => {
  it("send no spec at all for a call with every option at its default", () => {
    charge("c", 1);
    runTask("chargeForOptions", ["c", 2]);
    expect(executor.submitted.map((request) => request.spec)).toStrictEqual([undefined, undefined]);
  });

  it("resolve a call's spec from the task's defaults and the call's overrides", () => {
    const defaults = task(
      { name: "withDefaultsForOptions", retry: { maxAttempts: 3, initialDelayMs: 10 }, priority: 1 },
      function withDefaultsForOptions() {
        return 1;
      },
    );
    const before = Date.now();
    defaults.with({ priority: 7, delayMs: 1_000, idempotencyKey: "order-1" })();
    const spec = executor.submitted[0]?.spec;
    expect(spec).toMatchObject({
      maxAttempts: 3,
      initialDelayMs: 10,
      priority: 7,
      idempotencyKey: "order-1",
    });
    expect(spec?.startAt).toBeGreaterThanOrEqual(before + 1_000);
  });
});
