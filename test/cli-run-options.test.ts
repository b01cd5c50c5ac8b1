/**
 * What the command line shows of run options (SPEC §4), and `tasks run NAME`, driven as a
 * person or a script would: the built command in its own process, against a real daemon. The
 * test makes instances through the SDK (or the command) and reads what the command prints and
 * how it exits.
 */
import net from "node:net";
import {
  PlatformExecutor,
  type TaskInstanceState,
  getTaskInstance,
  listTaskInstances,
  setExecutor,
} from "numerous-tasks";
import { afterEach, describe, expect, it } from "vitest";
import { breaks, holdsUntilStopped, reply } from "./fixtures/security-tasks.js";
import { runCli, startCli } from "./helpers/cli-process.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";
import { until } from "./helpers/handles.js";

const daemons: DaemonProcess[] = [];
const executors: PlatformExecutor[] = [];

afterEach(async () => {
  for (const executor of executors.splice(0)) await executor.close();
  for (const daemon of daemons.splice(0)) {
    await daemon.stop();
    removeDataDir(daemon.dataDir);
  }
});

/**
 * Each command is a process of its own, and each task a workload process: several of them per
 * test outgrow the default 30 s on a loaded machine.
 */
const SLOW = 120_000;

/** A daemon, the SDK connected to it, and the environment that points the command at it. */
async function start(): Promise<{ daemon: DaemonProcess; env: Record<string, string> }> {
  const daemon = await startDaemon();
  daemons.push(daemon);
  const executor = new PlatformExecutor({
    address: daemon.address,
    accessToken: undefined,
    deploymentId: undefined,
    tlsCaFile: undefined,
  });
  executors.push(executor);
  setExecutor(executor);
  return { daemon, env: { NUMEROUS_EXECUTOR_ADDRESS: daemon.address } };
}

/** How far off a time to come is, as `tasks get` says it: `(in 59s)`, `(in 1m)`, `(in 9m 56s)`. */
const IN = "\\(in \\d+(ms|s|m|h|d)( \\d+(s|m))?\\)";

/** The line `get` prints for what a process-mode workload used. */
const USAGE = /^exit code: 0 {2}cpu: \d+\.\d\d s {2}peak memory: [\d.]+ MiB$/;

function lines(text: string): string[] {
  return text.trimEnd().split("\n");
}

/** A port nothing listens on: bound, then let go. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** An instance of `breaks` whose first attempt failed and whose second waits a minute. */
async function waitingToRetry(message: string): Promise<TaskInstanceState> {
  const instance = breaks.with({ retry: { maxAttempts: 3, initialDelayMs: 60_000 } })(message);
  await until(
    instance,
    (i) => i.status === "pending" && i.attempt === 2 && i.nextAttemptAt !== undefined,
    "the wait before attempt 2",
  );
  return instance;
}

function delayedReply(key: string): TaskInstanceState {
  return reply.with({ delayMs: 60_000, priority: 7, idempotencyKey: key })("later");
}

describe("instances with run options, as get, list and watch show them", () => {
  it(
    "get prints the attempt, the next attempt's time, the start time, the priority, the key and each failed attempt",
    async () => {
      const { env } = await start();
      const retrying = await waitingToRetry("boom");
      const delayed = delayedReply("order-981");
      const next = retrying.nextAttemptAt?.toISOString();
      const scheduled = delayed.scheduledFor?.toISOString();

      const first = await runCli(["tasks", "get", retrying.id], { env });
      expect(first.code).toBe(0);
      expect(first.stderr).toBe("");
      const retryLines = lines(first.stdout);
      // The table as for any instance, then the run options spelled out.
      expect(retryLines[0]).toMatch(/^ID\s+TASK\s+STATUS\s+PROGRESS\s+CREATED\s+FINISHED$/);
      expect(retryLines[1]?.split(/\s+/).slice(0, 3)).toEqual([retrying.id, "breaks", "pending"]);
      expect(retryLines[2]).toBe("attempt: 2/3");
      expect(retryLines[3]).toMatch(new RegExp(`^next attempt: ${next} ${IN}$`));
      expect(retryLines.slice(4)).toEqual([
        `attempt 1 failed at ${retrying.attempts[0]?.finishedAt?.toISOString()}: Error: boom`,
        // What the last attempt's workload used (SPEC §6).
        expect.stringMatching(USAGE),
      ]);

      const second = await runCli(["tasks", "get", delayed.id], { env });
      expect(second.code).toBe(0);
      expect(lines(second.stdout).slice(2)).toEqual([
        expect.stringMatching(new RegExp(`^scheduled for: ${scheduled} ${IN}$`)),
        "priority: 7",
        'idempotency key: "order-981"',
      ]);

      const json = await runCli(["tasks", "get", retrying.id, "--json"], { env });
      expect(JSON.parse(json.stdout)).toMatchObject({
        id: retrying.id,
        status: "pending",
        attempt: 2,
        maxAttempts: 3,
        nextAttemptAt: next,
        priority: 0,
        attempts: [{ attempt: 1, error: { name: "Error", message: "boom" } }],
      });
      const delayedJson = await runCli(["tasks", "get", delayed.id, "--json"], { env });
      expect(JSON.parse(delayedJson.stdout)).toMatchObject({
        id: delayed.id,
        status: "pending",
        attempt: 1,
        maxAttempts: 1,
        scheduledFor: scheduled,
        priority: 7,
        idempotencyKey: "order-981",
      });
      await Promise.all([retrying.stop(), delayed.stop()]);
    },
    SLOW,
  );

  it(
    "list adds a NOTES column only when an instance has run options to show, and --json carries them",
    async () => {
      const { env } = await start();
      const plain = reply("plain");
      await plain.wait();
      const before = await runCli(["tasks", "list"], { env });
      expect(lines(before.stdout)[0]).toMatch(/^ID\s+TASK\s+STATUS\s+PROGRESS\s+CREATED\s+FINISHED$/);

      const retrying = await waitingToRetry("listed");
      const delayed = delayedReply("order-982");
      const table = await runCli(["tasks", "list"], { env });
      expect(table.code).toBe(0);
      const [header, ...rows] = lines(table.stdout);
      expect(header).toMatch(/^ID\s+TASK\s+STATUS\s+PROGRESS\s+CREATED\s+FINISHED\s+NOTES$/);
      const notes = rows.map((row) => row.slice(header?.indexOf("NOTES")));
      expect(rows.map((row) => row.split(/\s+/)[0])).toEqual([plain.id, retrying.id, delayed.id]);
      expect(notes).toEqual([
        "",
        `attempt 2/3, next attempt at ${retrying.nextAttemptAt?.toISOString()}`,
        `scheduled for ${delayed.scheduledFor?.toISOString()}, priority 7, key "order-982"`,
      ]);

      const json = await runCli(["tasks", "list", "--json"], { env });
      const listed = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
      expect(
        listed.map(({ id, attempt, maxAttempts, nextAttemptAt, scheduledFor, priority, idempotencyKey }) => ({
          id,
          attempt,
          maxAttempts,
          nextAttemptAt,
          scheduledFor,
          priority,
          idempotencyKey,
        })),
      ).toEqual([
        { id: plain.id, attempt: 1, maxAttempts: 1, priority: 0 },
        {
          id: retrying.id,
          attempt: 2,
          maxAttempts: 3,
          nextAttemptAt: retrying.nextAttemptAt?.toISOString(),
          priority: 0,
        },
        {
          id: delayed.id,
          attempt: 1,
          maxAttempts: 1,
          scheduledFor: delayed.scheduledFor?.toISOString(),
          priority: 7,
          idempotencyKey: "order-982",
        },
      ]);
      await Promise.all([retrying.stop(), delayed.stop()]);
    },
    SLOW,
  );

  it(
    "watch tells the attempt and the next attempt's time on each line, and --json carries the options",
    async () => {
      const { env } = await start();
      const retrying = await waitingToRetry("watched");
      const next = retrying.nextAttemptAt?.toISOString();
      const watch = startCli(["tasks", "watch", retrying.id], { env });
      await watch.waitForOutput("\n");
      await retrying.stop();
      const result = await watch.exited;
      expect(result.code).toBe(3);
      const watched = lines(result.stdout);
      expect(watched[0]).toMatch(new RegExp(`^pending \\d+% \\(attempt 2/3, next attempt at ${next}\\)$`));
      // Stopped while it waited to retry: final, and no next attempt to tell.
      expect(watched.at(-2)).toMatch(/^cancelled \d+% \(attempt 2\/3\)$/);
      expect(watched.at(-1)).toMatch(/^cancelled/);

      const delayed = delayedReply("order-983");
      const jsonWatch = startCli(["tasks", "watch", delayed.id, "--json"], { env });
      await jsonWatch.waitForOutput("\n");
      await delayed.stop();
      const jsonResult = await jsonWatch.exited;
      expect(jsonResult.code).toBe(3);
      const snapshots = lines(jsonResult.stdout).map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(snapshots[0]).toMatchObject({
        status: "pending",
        scheduledFor: delayed.scheduledFor?.toISOString(),
        priority: 7,
        idempotencyKey: "order-983",
        maxAttempts: 1,
      });
      expect(snapshots.at(-1)).toMatchObject({ status: "cancelled", idempotencyKey: "order-983" });
    },
    SLOW,
  );
});

describe("tasks run", () => {
  it(
    "starts a task the deployment knows by name and prints the instance id; --wait prints how it ended",
    async () => {
      const { env } = await start();
      // The deployment learns its tasks from the app's calls.
      await reply("known").wait();
      await breaks("known")
        .wait()
        .catch(() => undefined);

      const started = await runCli(["tasks", "run", "reply", "--args", '[{"a":1}]'], { env });
      expect(started).toMatchObject({ code: 0, stderr: "" });
      const id = started.stdout.trimEnd();
      expect(started.stdout).toBe(`${id}\n`);
      const instance = await getTaskInstance(id);
      expect(instance?.taskName).toBe("reply");
      await expect(instance?.wait()).resolves.toEqual({ a: 1 });

      const waited = await runCli(["tasks", "run", "reply", "--args", "[42]", "--wait"], { env });
      expect(waited.code).toBe(0);
      const [waitedId, end] = lines(waited.stdout);
      expect(end).toBe("completed: 42");
      expect((await getTaskInstance(waitedId ?? ""))?.status).toBe("completed");

      const failed = await runCli(
        ["tasks", "run", "breaks", "--args", '["bad"]', "--max-attempts", "2", "--wait"],
        {
          env,
        },
      );
      expect(failed.code).toBe(1);
      const [failedId, failure] = lines(failed.stdout);
      expect(failure).toBe("failed: Error: bad");
      const shown = await runCli(["tasks", "get", failedId ?? ""], { env });
      expect(shown.code).toBe(1);
      expect(lines(shown.stdout).slice(2)).toEqual([
        "attempt: 2/2",
        expect.stringMatching(/^attempt 1 failed at \S+: Error: bad$/),
        expect.stringMatching(USAGE),
        "failed: Error: bad",
      ]);
    },
    SLOW,
  );

  it(
    "gives every run with one idempotency key the same instance, the one the SDK's call gets too",
    async () => {
      const { env } = await start();
      await reply("known").wait();
      const first = await runCli(
        ["tasks", "run", "reply", "--args", '["first"]', "--idempotency-key", "order-1"],
        {
          env,
        },
      );
      expect(first).toMatchObject({ code: 0, stderr: "" });
      const id = first.stdout.trimEnd();
      const second = await runCli(
        ["tasks", "run", "reply", "--args", '["second"]', "--idempotency-key", "order-1"],
        {
          env,
        },
      );
      expect(second.code).toBe(0);
      expect(second.stdout).toBe(`${id}\n`);
      expect(second.stderr).toMatch(
        /^numerous-executor: idempotency key "order-1" names an instance made before, at \S+: this is that one, and these arguments are not used\n$/,
      );
      const fromApp = reply.with({ idempotencyKey: "order-1" })("third");
      expect(fromApp.id).toBe(id);
      await expect(fromApp.wait()).resolves.toBe("first");
      const keyed = (await listTaskInstances({ task: "reply" })).filter(
        (i) => i.idempotencyKey === "order-1",
      );
      expect(keyed.map((i) => i.id)).toEqual([id]);
    },
    SLOW,
  );

  it(
    "--delay and --priority make a pending instance with its start time; --json prints it",
    async () => {
      const { env } = await start();
      await reply("known").wait();
      const result = await runCli(
        ["tasks", "run", "reply", "--args", '["later"]', "--delay", "1m", "--priority", "3", "--json"],
        { env },
      );
      expect(result).toMatchObject({ code: 0, stderr: "" });
      const view = JSON.parse(result.stdout) as { id: string; createdAt: string; scheduledFor: string };
      expect(view).toMatchObject({ taskName: "reply", status: "pending", priority: 3, maxAttempts: 1 });
      expect(Date.parse(view.scheduledFor) - Date.parse(view.createdAt)).toBe(60_000);
      const instance = await getTaskInstance(view.id);
      expect(instance?.scheduledFor?.toISOString()).toBe(view.scheduledFor);
      await instance?.stop();
      if (instance !== undefined) await until(instance, (i) => i.status === "cancelled", "its cancellation");
    },
    SLOW,
  );

  it(
    "exits 4 naming the task for a name the deployment does not know, 5 when the daemon is unreachable",
    async () => {
      const { env } = await start();
      const unknown = await runCli(["tasks", "run", "noSuchTask", "--args", "[1]"], { env });
      expect(unknown).toEqual({
        code: 4,
        stdout: "",
        stderr: 'numerous-executor: no task named "noSuchTask" is defined for this deployment\n',
      });
      expect(await listTaskInstances()).toEqual([]);

      const address = `127.0.0.1:${await closedPort()}`;
      const unreachable = await runCli(["tasks", "run", "reply"], {
        env: { NUMEROUS_EXECUTOR_ADDRESS: address },
      });
      expect(unreachable.code).toBe(5);
      expect(unreachable.stdout).toBe("");
      expect(unreachable.stderr).toMatch(
        new RegExp(`^numerous-executor: task executor at ${address} is unavailable`),
      );
    },
    SLOW,
  );

  it(
    "refuses bad flags with exit 2 and a message naming the flag, and submits nothing",
    async () => {
      const { env } = await start();
      const held = holdsUntilStopped("held");
      await until(held, (i) => i.progress === 0.5, "progress 0.5");
      const cases: Array<[string[], string]> = [
        [["--args", '{"a":1}'], "--args expects the task's arguments as a JSON array"],
        [["--args", "not json"], "--args expects the task's arguments as a JSON array"],
        [
          ["--args", "null"],
          `--args expects the task's arguments as a JSON array (e.g. --args '[1, "two"]'), got null`,
        ],
        [["--idempotency-key", ""], "--idempotency-key must not be empty"],
        [["--idempotency-key", "  "], "--idempotency-key must not be empty"],
        [["--idempotency-key", "k".repeat(1025)], "idempotencyKey: must be at most 1024 characters"],
        [["--delay", "5 parsecs"], '--delay: "5 parsecs" is not a duration'],
        [["--delay", "-5s"], '--delay: "-5s" is not a duration'],
        [["--priority", "1.5"], '--priority expects a whole number, got "1.5"'],
        [["--priority", ""], '--priority expects a whole number, got ""'],
        [["--max-attempts", "0"], '--max-attempts expects a whole number of at least 1, got "0"'],
        [["--timeout", "0s"], "--timeout must be longer than 0"],
      ];
      for (const [flags, message] of cases) {
        const result = await runCli(["tasks", "run", "reply", "--wait", ...flags], { env });
        expect(result.code, flags.join(" ")).toBe(2);
        expect(result.stdout, flags.join(" ")).toBe("");
        expect(result.stderr, flags.join(" ")).toContain(`numerous-executor: ${message}`);
      }
      // Checked before any daemon is asked: an unreachable one changes nothing.
      const address = `127.0.0.1:${await closedPort()}`;
      const offline = await runCli(["tasks", "run", "reply", "--args", "{}"], {
        env: { NUMEROUS_EXECUTOR_ADDRESS: address },
      });
      expect(offline.code).toBe(2);
      expect((await listTaskInstances()).map((i) => i.id)).toEqual([held.id]);
      await held.stop();
    },
    SLOW,
  );
});
