/**
 * Bad input and faults against the platform executor: each test runs a real daemon process
 * with real workloads, and checks that the instance ends the way a user can act on, that the
 * daemon carries on, and that nothing is left pending or running.
 *
 * Tests wait on stream updates, log lines and process events, never on sleeps; every wait has a
 * deadline that fails the test with what it waited for (test/helpers/deadline.ts).
 */
import {
  type FSWatcher,
  existsSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  symlinkSync,
  watch,
  writeFileSync,
} from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import {
  ExecutorUnavailableError,
  PlatformExecutor,
  type TaskInstanceState,
  TaskCancelledError,
  TaskFailedError,
  getTaskInstance,
  listTaskInstances,
  setExecutor,
  stopTaskInstance,
  waitForCompletion,
} from "numerous-tasks";
import { afterEach, describe, expect, it } from "vitest";
import {
  type DaemonMessage,
  type InstanceChanges,
  NewInstance,
  Status,
  type SubmitResponse,
  TaskServiceClient,
  WatchInstancesRequest,
  WorkloadMessage,
  WorkloadServiceClient,
} from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import {
  FRAME_MESSAGE,
  FRAME_REFUSAL,
  FrameReader,
  type Refusal,
  decodeRefusal,
  encodeFrame,
  encodeRefusal,
} from "../executor-platform/protocol/workload-frames.js";
import { WorkloadTokens } from "../executor-platform/daemon/workload-token.js";
import { encodeValue } from "../sdk/codec.js";
import {
  defineStrayTask,
  exitsWithCode,
  exitsWithoutResult,
  floodsStderr,
  ignoresStops,
  killsItself,
  measure,
  quick,
  throwsUncaught,
  waitsForFlag,
} from "./fixtures/fault-tasks.js";
import {
  type DaemonProcess,
  type DaemonProcessOptions,
  removeDataDir,
  startDaemon,
} from "./helpers/daemon-process.js";
import { pollUntil, withDeadline } from "./helpers/deadline.js";
import { until } from "./helpers/handles.js";

const FAULT_TASKS = fileURLToPath(new URL("./fixtures/fault-tasks.ts", import.meta.url));

const daemons: DaemonProcess[] = [];
const executors: PlatformExecutor[] = [];
const cleanups: Array<() => void | Promise<void>> = [];

afterEach(async () => {
  for (const executor of executors.splice(0)) await executor.close();
  for (const daemon of daemons.splice(0)) {
    if (isAlive(daemon)) {
      // A test that failed half-way may leave a task waiting: stop it, so no workload outlives the test.
      const executor = new PlatformExecutor({
        address: daemon.address,
        accessToken: undefined,
        deploymentId: undefined,
        tlsCaFile: undefined,
      });
      const active = await executor.list({ status: ["pending", "running"] }).catch(() => ({ instances: [] }));
      await Promise.allSettled(active.instances.map((instance) => executor.stop(instance.id)));
      await executor.close();
      await daemon.stop();
    }
    removeDataDir(daemon.dataDir);
  }
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(options: DaemonProcessOptions = {}): Promise<DaemonProcess> {
  const daemon = await startDaemon(options);
  daemons.push(daemon);
  return daemon;
}

/** A platform executor on `address`, made the one the SDK uses. */
function connect(address: string): PlatformExecutor {
  const executor = new PlatformExecutor({
    address,
    accessToken: undefined,
    deploymentId: undefined,
    tlsCaFile: undefined,
  });
  executors.push(executor);
  setExecutor(executor);
  return executor;
}

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function rawTaskClient(address: string): TaskServiceClient {
  const client = new TaskServiceClient(address, grpc.credentials.createInsecure());
  cleanups.push(() => client.close());
  return client;
}

/** A live handle's process id, which `waitsForFlag` reports as output. */
function pidOf(instance: TaskInstanceState): number {
  const pid = instance.output?.pid;
  if (typeof pid !== "number") throw new Error(`instance ${instance.id} reported no pid`);
  return pid;
}

async function failureOf(instance: TaskInstanceState): Promise<unknown> {
  return instance.wait().then(
    (value) => ({ resolved: value }),
    (error: unknown) => error,
  );
}

/** No instance of the deployment is left pending or running. */
async function expectNothingStuck(): Promise<void> {
  const stuck = await listTaskInstances({ status: ["pending", "running"] });
  expect(stuck.map((instance) => `${instance.taskName} ${instance.id} ${instance.status}`)).toEqual([]);
}

/** Resolves once `path` exists, told by a watch of its directory; rejects at the deadline. */
function fileAppears(path: string): Promise<void> {
  let watcher: FSWatcher | undefined;
  const appeared = new Promise<void>((resolve) => {
    watcher = watch(dirname(path), () => {
      if (existsSync(path)) resolve();
    });
    if (existsSync(path)) resolve();
  });
  return withDeadline(appeared, `${path} to appear`).finally(() => watcher?.close());
}

/** Resolves once process `pid` is gone: polled, as nothing tells a non-parent of an exit. */
function processExits(pid: number): Promise<void> {
  const gone = () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  return pollUntil(gone, `process ${pid} to exit`);
}

function isAlive(daemon: DaemonProcess): boolean {
  return daemon.child.exitCode === null && daemon.child.signalCode === null;
}

function expectAlive(daemon: DaemonProcess): void {
  expect(isAlive(daemon)).toBe(true);
}

describe("bad input from clients", () => {
  it("fails an instance whose module does not define the task with TaskNotFoundError, and carries on", async () => {
    const marker = join(tempDir("nt-marker-"), "imported");
    const daemon = await start({ env: { NT_FAULT_IMPORT_MARKER: marker } });
    connect(daemon.address);

    const stray = defineStrayTask();
    const instance = stray();
    const error = await failureOf(instance);

    expect(error).toBeInstanceOf(TaskFailedError);
    expect(instance.status).toBe("failed");
    expect(instance.error?.name).toBe("TaskNotFoundError");
    expect(instance.error?.message).toBe(
      `module ${realpathSync(FAULT_TASKS)} does not define a task named "strayTaskNotDefinedOnImport"`,
    );
    // The workload did import the module, looking for the task.
    expect(existsSync(marker)).toBe(true);

    // A module that is not there, or not named, is refused at submit, per instance.
    const client = rawTaskClient(daemon.address);
    const response = await new Promise<SubmitResponse>((resolve, reject) =>
      client.submit(
        {
          instances: [
            NewInstance.fromPartial({
              id: "missing-module-1",
              taskName: "anything",
              args: "J[]",
              module: "/no/such/dir/tasks.ts",
            }),
            NewInstance.fromPartial({
              id: "missing-module-2",
              taskName: "anything",
              args: "J[]",
              module: "",
            }),
            NewInstance.fromPartial({
              id: "bad-args-1",
              taskName: "quick",
              args: "{not the codec",
              module: FAULT_TASKS,
            }),
          ],
        },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
    expect(
      response.results.map((result) => result.outcome?.$case === "error" && result.outcome.value),
    ).toEqual([
      expect.objectContaining({
        name: "TaskNotFoundError",
        message: expect.stringContaining("/no/such/dir/tasks.ts does not exist"),
      }),
      expect.objectContaining({
        name: "TaskNotFoundError",
        // No module at all names the task only (runTask by name): the deployment knows no "anything".
        message: 'no task named "anything" is defined for this deployment',
        code: "TASK_NOT_DEFINED",
      }),
      expect.objectContaining({
        name: "TaskInputError",
        message: expect.stringContaining("not encoded by the numerous-tasks codec"),
      }),
    ]);

    await expect(quick("still serving").wait()).resolves.toBe("still serving");
    expectAlive(daemon);
    await expectNothingStuck();
  });

  it("refuses a module outside the app root, naming the root, and imports nothing", async () => {
    const appRoot = tempDir("nt-app-root-");
    const marker = join(tempDir("nt-marker-"), "imported");
    const daemon = await start({ appRoot, env: { NT_FAULT_IMPORT_MARKER: marker } });
    connect(daemon.address);

    const instance = quick("never runs");
    const error = await failureOf(instance);

    expect(error).toBeInstanceOf(TaskFailedError);
    expect(instance.status).toBe("failed");
    expect(instance.error?.name).toBe("TaskNotFoundError");
    expect(instance.error?.message).toContain(`outside the daemon's app root ${realpathSync(appRoot)}`);
    await expect(getTaskInstance(instance.id)).resolves.toBeUndefined();

    // A link inside the root to a module outside it is judged by where it leads.
    const link = join(appRoot, "linked-tasks.ts");
    symlinkSync(FAULT_TASKS, link);
    const response = await new Promise<SubmitResponse>((resolve, reject) =>
      rawTaskClient(daemon.address).submit(
        {
          instances: [
            NewInstance.fromPartial({ id: "through-a-link", taskName: "quick", args: "J[1]", module: link }),
          ],
        },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
    const outcome = response.results[0]?.outcome;
    expect(outcome?.$case).toBe("error");
    expect(outcome?.$case === "error" && outcome.value.message).toContain(
      `outside the daemon's app root ${realpathSync(appRoot)}`,
    );

    expect(existsSync(marker)).toBe(false);
    expectAlive(daemon);
    await expectNothingStuck();
  });

  it("fails an argument larger than the daemon's message limit alone; the rest of its batch runs", async () => {
    const daemon = await start({ args: ["--max-message-bytes", String(1024 * 1024)] });
    connect(daemon.address);

    const before = measure("a");
    const oversized = measure("y".repeat(2_000_000));
    const after = measure("bb");
    const nearLimit = measure("z".repeat(900_000));

    const error = await failureOf(oversized);
    expect(error).toBeInstanceOf(TaskFailedError);
    expect(oversized.status).toBe("failed");
    expect(oversized.error).toMatchObject({ name: "TaskInputError", code: "TASK_INPUT" });
    expect(oversized.error?.message).toMatch(/too large for the daemon/);
    expect(oversized.error?.message).toContain("1048576");
    await expect(before.wait()).resolves.toBe(1);
    await expect(after.wait()).resolves.toBe(2);
    await expect(nearLimit.wait()).resolves.toBe(900_000);

    expectAlive(daemon);
    await expectNothingStuck();
  });
});

/** A gRPC length-prefixed frame: flag, 4-byte length, payload. */
function frame(payload: Buffer, declaredLength = payload.length, compressed = false): Buffer {
  const header = Buffer.alloc(5);
  header[0] = compressed ? 1 : 0;
  header.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([header, payload]);
}

/** POSTs raw bytes to a gRPC method over plain HTTP/2 and returns the status the server sent. */
async function rawGrpcCall(
  address: string,
  path: string,
  body: Buffer,
): Promise<{ code: number; message: string }> {
  const session = http2.connect(`http://${address}`);
  session.on("error", () => {});
  try {
    const request = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let status: { code: number; message: string } | undefined;
    const take = (headers: http2.IncomingHttpHeaders) => {
      const code = headers["grpc-status"];
      if (typeof code === "string")
        status = { code: Number(code), message: decodeURIComponent(String(headers["grpc-message"] ?? "")) };
    };
    request.on("response", take);
    request.on("trailers", take);
    request.on("data", () => {});
    const closed = new Promise<void>((resolve) => request.on("close", resolve));
    request.end(body);
    await withDeadline(closed, `the daemon's answer to ${path}`);
    if (status === undefined) throw new Error(`no grpc-status for ${path}`);
    return status;
  } finally {
    session.close();
  }
}

describe("malformed messages on the wire", () => {
  it("answers garbage and truncated frames on both services with a gRPC error status, and goes on serving", async () => {
    const daemon = await start();
    connect(daemon.address);
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x99]);
    const bodies: Record<string, Buffer> = {
      "garbage protobuf": frame(garbage),
      "a frame shorter than its length": frame(Buffer.from("short"), 100),
      "a truncated length prefix": Buffer.from([0, 0, 0]),
      "a compressed flag with no encoding": frame(Buffer.from("abc"), 3, true),
      "a length beyond the limit": frame(Buffer.from("abc"), 0xfffffff0),
    };
    // Whatever the code (gRPC itself answers most of these), it is never OK and always says why.
    for (const path of [
      "/numerous.tasks.v1.TaskService/Submit",
      "/numerous.tasks.v1.WorkloadService/Connect",
    ]) {
      for (const [what, body] of Object.entries(bodies)) {
        const status = await rawGrpcCall(daemon.address, path, body);
        expect({ path, what, failed: status.code !== grpc.status.OK }).toEqual({ path, what, failed: true });
        expect(status.message).not.toBe("");
      }
    }
    // Well-formed protobuf that says nothing: the workload service names what is wrong.
    await expect(
      rawGrpcCall(daemon.address, "/numerous.tasks.v1.WorkloadService/Connect", frame(Buffer.alloc(0))),
    ).resolves.toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      message: "empty workload message",
    });
    await expect(
      rawGrpcCall(daemon.address, "/numerous.tasks.v1.WorkloadService/Connect", Buffer.alloc(0)),
    ).resolves.toEqual({
      code: grpc.status.FAILED_PRECONDITION,
      message: "the workload stream ended before it said hello",
    });

    // Not HTTP/2 at all: the connection is dropped (closed or reset), the daemon stays.
    await withDeadline(
      new Promise<void>((resolve) => {
        const socket = net.connect(Number(daemon.address.split(":").at(-1)), "127.0.0.1", () => {
          socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n\u0000\u00ff garbage");
        });
        socket.on("data", () => {});
        socket.on("error", () => {});
        socket.on("close", () => resolve());
      }),
      "the daemon to drop a connection that is not HTTP/2",
    );

    await expect(quick("after the garbage").wait()).resolves.toBe("after the garbage");
    expectAlive(daemon);
    await expectNothingStuck();
  });
});

describe("the framed workload socket", () => {
  it("refuses garbage, oversized and malformed frames and a wrong token with a status, and goes on serving", async () => {
    const daemon = await start();
    connect(daemon.address);
    const path = join(daemon.dataDir, "workload-frames.sock");
    const hello = (token: string) =>
      encodeFrame(
        FRAME_MESSAGE,
        WorkloadMessage.encode({
          kind: {
            $case: "hello",
            value: { workloadToken: token, instanceId: "x", pid: 1, stopRequestedAtMs: 0 },
          },
        }).finish(),
      );
    const cases: Array<[string, Buffer, number]> = [
      ["an unknown frame kind", Buffer.from([7, 0, 0, 0, 1, 0]), grpc.status.INVALID_ARGUMENT],
      ["a length beyond the limit", Buffer.from([0, 0x7f, 0xff, 0xff, 0xff]), grpc.status.RESOURCE_EXHAUSTED],
      [
        "bytes that are not protobuf",
        encodeFrame(FRAME_MESSAGE, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])),
        grpc.status.INVALID_ARGUMENT,
      ],
      ["an empty message", encodeFrame(FRAME_MESSAGE, Buffer.alloc(0)), grpc.status.INVALID_ARGUMENT],
      [
        "progress before hello",
        encodeFrame(
          FRAME_MESSAGE,
          WorkloadMessage.encode({
            kind: { $case: "progress", value: { instanceId: "x", value: 0.5 } },
          }).finish(),
        ),
        grpc.status.FAILED_PRECONDITION,
      ],
      [
        "a refusal from the workload",
        encodeRefusal({ code: 0, message: "no" }),
        grpc.status.INVALID_ARGUMENT,
      ],
      ["a hello with a wrong token", hello("not-a-token"), grpc.status.PERMISSION_DENIED],
    ];
    for (const [what, bytes, code] of cases) {
      const answer = await framedExchange(path, bytes);
      expect({ what, code: answer.code }).toEqual({ what, code });
      expect(answer.message).not.toBe("");
    }
    await expect(quick("after the frames").wait()).resolves.toBe("after the frames");
    expectAlive(daemon);
  });

  it("falls back to gRPC for workloads when the data directory is too deep for a socket path", async () => {
    const deep = join(tempDir("nt-deep-"), "d".repeat(60), "e".repeat(40));
    const daemon = await start({ dataDir: deep });
    expect(existsSync(join(deep, "workload-frames.sock"))).toBe(false);
    connect(daemon.address);
    await expect(quick("over grpc").wait()).resolves.toBe("over grpc");
  });
});

/** Sends `bytes` on the framed socket and resolves with the daemon's refusal. */
function framedExchange(path: string, bytes: Buffer): Promise<Refusal> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    const reader = new FrameReader(1024 * 1024);
    socket.on("data", (chunk: Buffer) => {
      for (const frame of reader.push(chunk)) {
        if (frame.kind === FRAME_REFUSAL) resolve(decodeRefusal(frame.payload));
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => reject(new Error("the daemon closed the socket without a refusal")));
    socket.write(bytes);
  });
}

describe("workloads that die", () => {
  it("fails the instance with the exit code or signal and a bounded tail of stderr; the daemon and the rest carry on", async () => {
    const daemon = await start({ args: ["--concurrency", "6"] });
    connect(daemon.address);
    const flood = 10 * 1024 * 1024;

    const noResult = exitsWithoutResult();
    const crash = exitsWithCode(3);
    const killed = killsItself();
    const uncaught = throwsUncaught("thrown where no task catches it");
    const floodThenExit = floodsStderr(flood, "flood then exit", "exit");
    const floodThenReturn = floodsStderr(flood, "flood then return", "return");
    const bystander = quick("unaffected");

    const dead = [noResult, crash, killed, uncaught, floodThenExit];
    const ends = await Promise.all(dead.map(failureOf));
    for (const end of ends) expect(end).toBeInstanceOf(TaskFailedError);
    for (const instance of dead) {
      expect(instance.status).toBe("failed");
      expect(instance.error?.name).toBe("WorkloadExitedError");
      expect(instance.error?.message.length).toBeLessThan(16 * 1024);
    }
    expect(noResult.error?.message).toMatch(
      /^the workload process exited with code 0 before reporting a result/,
    );
    expect(crash.error?.message).toMatch(
      /^the workload process exited with code 3 before reporting a result/,
    );
    expect(killed.error?.message).toMatch(
      /^the workload process was killed by SIGKILL before reporting a result/,
    );
    // Node's report of an uncaught error is the end of the tail.
    const thrown = uncaught.error?.message ?? "";
    expect(thrown).toMatch(
      /^the workload process exited with code 1 before reporting a result; last output:\n/,
    );
    expect(thrown).toContain("Error: thrown where no task catches it\n    at ");
    // Megabytes of output: its end is kept, a few KB of it.
    const exited = floodThenExit.error?.message ?? "";
    expect(exited).toMatch(
      /^the workload process exited with code 5 before reporting a result; last output:\n/,
    );
    expect(exited.endsWith("xxx\nlast words: flood then exit")).toBe(true);

    await expect(floodThenReturn.wait()).resolves.toBe("flood then return");
    await expect(bystander.wait()).resolves.toBe("unaffected");
    await expect(quick("after the deaths").wait()).resolves.toBe("after the deaths");
    expectAlive(daemon);
    await expectNothingStuck();
  });
});

describe("an unreachable daemon", () => {
  it("fails the instance with ExecutorUnavailableError, and every call rejects with it, without hanging", async () => {
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer();
      server.listen(0, "127.0.0.1", () => {
        const { port: free } = server.address() as net.AddressInfo;
        server.close(() => resolve(free));
      });
    });
    const address = `127.0.0.1:${port}`;
    connect(address);

    // Nothing hangs: each wait below fails the test, naming it, if it never ends.
    const instance = quick(1);
    const error = await withDeadline(failureOf(instance), "the instance to fail");
    expect(error).toBeInstanceOf(ExecutorUnavailableError);
    expect(error).toMatchObject({ address, code: "EXECUTOR_UNAVAILABLE" });
    expect((error as ExecutorUnavailableError).message).toContain(
      `task executor at ${address} is unavailable`,
    );
    expect(instance.status).toBe("failed");
    expect(instance.error?.code).toBe("EXECUTOR_UNAVAILABLE");
    expect(instance.error?.message).toContain(address);
    await expect(waitForCompletion(instance)).rejects.toBeInstanceOf(ExecutorUnavailableError);

    const calls = await withDeadline(
      Promise.allSettled([
        waitForCompletion("some-instance-id"),
        getTaskInstance("some-instance-id"),
        listTaskInstances(),
      ]),
      "every call to reject",
    );
    for (const call of calls) {
      expect(call.status).toBe("rejected");
      expect(call.status === "rejected" && call.reason).toBeInstanceOf(ExecutorUnavailableError);
      expect(call.status === "rejected" && call.reason).toMatchObject({ address });
    }
  });
});

/** One raw workload stream: what the daemon sent, and the status it ended with. */
function openWorkloadStream(client: WorkloadServiceClient) {
  const call = client.connect();
  const received: DaemonMessage[] = [];
  const waiters = new Set<() => void>();
  call.on("data", (message: DaemonMessage) => {
    received.push(message);
    for (const waiter of [...waiters]) waiter();
  });
  const ended = new Promise<{ code: number; details: string }>((resolve) => {
    call.on("error", (error: grpc.ServiceError) => resolve({ code: error.code, details: error.details }));
    call.on("status", (status: grpc.StatusObject) => resolve({ code: status.code, details: status.details }));
  });
  return {
    send(message: WorkloadMessage["kind"]) {
      call.write({ kind: message });
    },
    ended,
    /** Resolves once the daemon sent a message of this kind. */
    receive(kind: NonNullable<DaemonMessage["kind"]>["$case"]): Promise<DaemonMessage> {
      const found = new Promise<DaemonMessage>((resolve) => {
        const check = () => {
          const found = received.find((message) => message.kind?.$case === kind);
          if (found === undefined) return;
          waiters.delete(check);
          resolve(found);
        };
        waiters.add(check);
        check();
      });
      return withDeadline(found, `a ${kind} message from the daemon`);
    },
    end() {
      call.end();
    },
  };
}

describe("a workload that says wrong things", () => {
  it("ignores progress out of range, and refuses a wrong token or another instance's id with PERMISSION_DENIED", async () => {
    const flag = join(tempDir("nt-flags-"), "never");
    const first = await start({ args: ["--concurrency", "2"] });
    connect(first.address);
    const before = [waitsForFlag(flag, "mine"), waitsForFlag(flag, "other")];
    await Promise.all(before.map((instance) => until(instance, (i) => i.progress === 0.5, "progress 0.5")));

    // Leave both instances running in the store with no workload, so this test can be theirs.
    await first.kill9();
    for (const instance of before) process.kill(pidOf(instance), "SIGKILL");
    const daemon = await start({ dataDir: first.dataDir, args: ["--reconnect-window-ms", "60000"] });
    connect(daemon.address);
    const [mine, other] = await Promise.all(before.map((instance) => getTaskInstance(instance.id)));
    if (mine === undefined || other === undefined) throw new Error("the restarted daemon lost the instances");
    const tokens = WorkloadTokens.fromDataDir(daemon.dataDir);
    const client = new WorkloadServiceClient(daemon.address, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());

    const wrongToken = openWorkloadStream(client);
    wrongToken.send({
      $case: "hello",
      value: { workloadToken: "not-a-token", instanceId: mine.id, pid: 1, stopRequestedAtMs: 0 },
    });
    await expect(withDeadline(wrongToken.ended, "the refusal of a wrong token")).resolves.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
    });

    const borrowedToken = openWorkloadStream(client);
    borrowedToken.send({
      $case: "hello",
      value: {
        workloadToken: tokens.forInstance(other.id),
        instanceId: mine.id,
        pid: 1,
        stopRequestedAtMs: 0,
      },
    });
    await expect(withDeadline(borrowedToken.ended, "the refusal of a borrowed token")).resolves.toMatchObject(
      { code: grpc.status.PERMISSION_DENIED },
    );

    // Reattached as `mine`, the stream reports progress no controller would let through.
    const seen: number[] = [];
    mine.onChange((instance) => seen.push(instance.progress));
    const stream = openWorkloadStream(client);
    stream.send({
      $case: "hello",
      value: {
        workloadToken: tokens.forInstance(mine.id),
        instanceId: mine.id,
        pid: 1,
        stopRequestedAtMs: 0,
      },
    });
    await daemon.waitForLog((entry) => entry.msg === "workload reattached" && entry.instance === mine.id);
    for (const value of [7, Number.NaN, -1, Number.POSITIVE_INFINITY, -0.000001, 1.000001]) {
      stream.send({ $case: "progress", value: { instanceId: mine.id, value } });
    }
    stream.send({ $case: "progress", value: { instanceId: mine.id, value: 0.25 } });
    await until(mine, (instance) => instance.progress === 0.25, "the last progress it was sent, 0.25");
    // The log and the watch stream are two pipes: wait for the last refusal to be read.
    const refusal = "ignored progress out of range from a workload";
    await daemon.waitForLog((entry) => entry.msg === refusal && entry.value === 1.000001);
    expect(daemon.logs.filter((entry) => entry.msg === refusal)).toHaveLength(6);
    expect(seen.every((progress) => progress >= 0 && progress <= 1)).toBe(true);

    // A message for another instance ends the stream, and changes nothing of the other's.
    const otherSeen: number[] = [];
    other.onChange((instance) => otherSeen.push(instance.progress));
    stream.send({ $case: "progress", value: { instanceId: other.id, value: 0.9 } });
    await expect(
      withDeadline(stream.ended, "the end of the stream that spoke for another instance"),
    ).resolves.toEqual({
      code: grpc.status.PERMISSION_DENIED,
      details: `this workload runs ${mine.id}, not ${other.id}`,
    });
    await expect(failureOf(mine)).resolves.toBeInstanceOf(TaskFailedError);
    expect(mine.error).toMatchObject({
      name: "WorkloadExitedError",
      message: "the workload disconnected before reporting a result",
    });
    expect(other.progress).toBe(0.5);
    expect(other.status).toBe("running");

    // The other instance's own workload can still report its end.
    const otherStream = openWorkloadStream(client);
    otherStream.send({
      $case: "hello",
      value: {
        workloadToken: tokens.forInstance(other.id),
        instanceId: other.id,
        pid: 1,
        stopRequestedAtMs: 0,
      },
    });
    otherStream.send({
      $case: "finished",
      value: {
        instanceId: other.id,
        status: Status.STATUS_COMPLETED,
        result: encodeValue("reported by hand", "result"),
        error: undefined,
      },
    });
    await otherStream.receive("finishedAck");
    otherStream.end();
    await expect(other.wait()).resolves.toBe("reported by hand");
    // Its end came after anything the refused message could have changed: none of it showed.
    expect(otherSeen).not.toContain(0.9);

    await expect(quick("still serving").wait()).resolves.toBe("still serving");
    expectAlive(daemon);
    await expectNothingStuck();
  });
});

/** A TCP proxy to the daemon that the test can cut, and keep cut. */
async function startProxy(target: string) {
  const [host, port] = [
    target.slice(0, target.lastIndexOf(":")),
    Number(target.slice(target.lastIndexOf(":") + 1)),
  ];
  const sockets = new Set<net.Socket>();
  let blocked = false;
  let onAccept: (() => void) | undefined;
  const server = net.createServer((client) => {
    if (blocked) {
      client.destroy();
      return;
    }
    onAccept?.();
    const upstream = net.connect(port, host);
    const pair = [client, upstream];
    for (const socket of pair) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        for (const end of pair) {
          end.destroy();
          sockets.delete(end);
        }
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const cut = () => {
    for (const socket of sockets) socket.destroy();
  };
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        cut();
        server.close(() => resolve());
      }),
  );
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    /** Destroys every open connection; with `keepOut`, refuses new ones until `letIn`. */
    cut(keepOut: boolean) {
      blocked = keepOut;
      cut();
    },
    letIn() {
      blocked = false;
    },
    /** Resolves when the proxy lets the next connection in. */
    nextConnection(): Promise<void> {
      return new Promise((resolve) => {
        onAccept = () => {
          onAccept = undefined;
          resolve();
        };
      });
    },
  };
}

describe("a client whose connection breaks", () => {
  it("follows an instance across cut connections and sees the end it missed, resuming from the last sequence", async () => {
    const daemon = await start();
    const proxy = await startProxy(daemon.address);
    const direct = new PlatformExecutor({
      address: daemon.address,
      accessToken: undefined,
      deploymentId: undefined,
      tlsCaFile: undefined,
    });
    executors.push(direct);
    connect(proxy.address);
    const flag = join(tempDir("nt-flags-"), "go");

    const instance = waitsForFlag(flag, { answer: 42 });
    await until(instance, (i) => i.progress === 0.5, "progress 0.5");

    // A cut that heals at once: the client connects again by itself.
    const reconnected = proxy.nextConnection();
    proxy.cut(false);
    await withDeadline(reconnected, "the client to connect again by itself");
    // A cut that lasts while the task ends: the handle can only learn it by resuming.
    proxy.cut(true);
    writeFileSync(flag, "");
    await withDeadline(
      new Promise<void>((resolve) => {
        const unwatch = direct.watch(instance.id, 0, (snapshot) => {
          if (snapshot.status !== "completed") return;
          unwatch();
          resolve();
        });
      }),
      "a direct client to see the instance complete",
    );
    expect(instance.status).toBe("running");
    expect(instance.progress).toBe(0.5);

    const resumed = proxy.nextConnection();
    proxy.letIn();
    await withDeadline(resumed, "the client to connect again once let in");
    await expect(instance.wait()).resolves.toEqual({ answer: 42 });
    expect(instance.status).toBe("completed");
    expect(instance.progress).toBe(1);
    expect(instance.output).toEqual({ pid: expect.any(Number), phase: "flagged" });

    await expectNothingStuck();
  });
});

describe("clients that stop reading or break their connection", () => {
  it("catches up a watcher that stopped reading: once it reads again it gets every change it missed, in order", async () => {
    const daemon = await start({ args: ["--workload-mode", "pool"] });
    connect(daemon.address);
    const client = new TaskServiceClient(daemon.address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.use_local_subchannel_pool": 1,
    });
    cleanups.push(() => client.close());
    const call = client.watchInstances(WatchInstancesRequest.fromPartial({ fromNow: true }));
    cleanups.push(() => call.cancel());
    const seen = new Map<string, { status: Status; result: string; revision: number }>();
    const sequences: number[] = [];
    let onMessage = () => {};
    call.on("data", (changes: InstanceChanges) => {
      sequences.push(changes.sequence);
      for (const instance of changes.instances) {
        const earlier = seen.get(instance.id);
        if (earlier === undefined || earlier.revision < instance.revision) {
          seen.set(instance.id, {
            status: instance.status,
            result: instance.result ?? "",
            revision: instance.revision,
          });
        }
      }
      onMessage();
    });
    const ended = new Promise<string>((resolve) => {
      call.on("error", (error: grpc.ServiceError) => resolve(`error ${error.code} ${error.details}`));
      call.on("end", () => resolve("end"));
    });
    await withDeadline(
      new Promise<void>((resolve) => {
        onMessage = resolve;
      }),
      "the watch stream's first message",
    );
    // It stops reading: megabytes of changes pile up behind it.
    call.pause();
    const texts = Array.from({ length: 24 }, (_, i) => `${i}:${"x".repeat(512 * 1024)}`);
    const instances = texts.map((text) => quick(text));
    await expect(Promise.all(instances.map((instance) => instance.wait()))).resolves.toEqual(texts);
    expect(seen.size).toBeLessThan(instances.length);

    const allEnded = new Promise<void>((resolve) => {
      onMessage = () => {
        if (instances.every((instance) => seen.get(instance.id)?.status === Status.STATUS_COMPLETED))
          resolve();
      };
    });
    call.resume();
    await withDeadline(allEnded, "the watcher that read again to see every instance complete");
    for (const [i, instance] of instances.entries()) {
      expect(seen.get(instance.id)?.result).toBe(encodeValue(texts[i], "result"));
    }
    expect(sequences).toEqual([...sequences].sort((a, b) => a - b));

    // A replay of named instances from the start, megabytes of it, reaches every end too.
    const replay = client.watchInstances(
      WatchInstancesRequest.fromPartial({ ids: instances.map((i) => i.id), afterSequence: 0 }),
    );
    cleanups.push(() => replay.cancel());
    replay.on("error", () => {});
    const replayed = new Map<string, string>();
    await withDeadline(
      new Promise<void>((resolve) => {
        replay.on("data", (changes: InstanceChanges) => {
          for (const instance of changes.instances)
            if (instance.status === Status.STATUS_COMPLETED) replayed.set(instance.id, instance.result ?? "");
          if (replayed.size === instances.length) resolve();
        });
      }),
      "the replay to reach every instance's end",
    );
    for (const [i, instance] of instances.entries())
      expect(replayed.get(instance.id)).toBe(encodeValue(texts[i], "result"));
    replay.cancel();

    // The stream is still open, and live: a new instance reaches it.
    const after = quick("after");
    const reached = new Promise<void>((resolve) => {
      onMessage = () => {
        if (seen.get(after.id)?.status === Status.STATUS_COMPLETED) resolve();
      };
    });
    await after.wait();
    await withDeadline(reached, "the open stream to see a new instance complete");

    // Listing them, megabytes over the daemon's message limit, gives every one in one call.
    const listed = await listTaskInstances({ limit: 1000 });
    expect(listed.map((instance) => instance.id)).toEqual(
      [...instances, after].map((instance) => instance.id),
    );
    expect(listed.at(-1)?.result).toBe("after");
    call.cancel();
    expect(await withDeadline(ended, "the cancelled watch to end")).toMatch(/^error 1 /);
    expectAlive(daemon);
  });

  it("closes a connection left open by oversized request headers once it is idle", async () => {
    const daemon = await start({ args: ["--connection-idle-ms", "300"] });
    connect(daemon.address);
    const session = http2.connect(`http://${daemon.address}`);
    session.on("error", () => {});
    const closed = new Promise<void>((resolve) => session.on("close", () => resolve()));
    const request = session.request({
      ":method": "POST",
      ":path": "/numerous.tasks.v1.TaskService/GetInstance",
      "content-type": "application/grpc",
      "x-rogue": "y".repeat(200 * 1024),
    });
    request.on("error", () => {});
    request.end(frame(Buffer.alloc(0)));
    // The daemon answers the stream with a reset and, left to grpc-js, would never read from
    // the connection again; the idle limit closes it.
    await withDeadline(closed, "the daemon to close the idle connection");
    await expect(quick("after the headers").wait()).resolves.toBe("after the headers");
    expectAlive(daemon);
  });
});

describe("a daemon that is killed or stopped", () => {
  it("after kill -9: lists every instance, runs the pending, takes back a running workload, fails one whose workload is gone", async () => {
    const listen = `unix:${join(tempDir("nt-sock-"), "daemon.sock")}`;
    const flags = tempDir("nt-flags-");
    const args = ["--concurrency", "2", "--reconnect-window-ms", "3000"];
    const first = await start({ listen, args });
    connect(first.address);

    const finished = quick("finished before");
    await expect(finished.wait()).resolves.toBe("finished before");
    const survivor = waitsForFlag(join(flags, "survivor"), "survived");
    const orphan = waitsForFlag(join(flags, "orphan"), "never returned");
    const pendingA = quick("pending a");
    const pendingB = quick("pending b");
    await Promise.all([
      until(survivor, (i) => i.progress === 0.5, "progress 0.5"),
      until(orphan, (i) => i.progress === 0.5, "progress 0.5"),
    ]);

    await first.kill9();
    process.kill(pidOf(orphan), "SIGKILL");
    const second = await start({ listen, dataDir: first.dataDir, args });
    expect(second.address).toBe(first.address);
    expect(second.logs).toContainEqual(
      expect.objectContaining({ msg: "recovered unfinished instances", pending: 2, running: 2 }),
    );

    // A client that starts now (its channel is fresh) sees every instance, with its status.
    connect(second.address);
    const listed = await listTaskInstances();
    expect(listed.map((instance) => [instance.id, instance.status])).toEqual([
      [finished.id, "completed"],
      [survivor.id, "running"],
      [orphan.id, "running"],
      [pendingA.id, "pending"],
      [pendingB.id, "pending"],
    ]);
    expect(listed[0]?.result).toBe("finished before");

    // The handles made before the kill follow the new daemon too.
    await second.waitForLog((entry) => entry.msg === "workload reattached" && entry.instance === survivor.id);
    writeFileSync(join(flags, "survivor"), "");
    await expect(survivor.wait()).resolves.toBe("survived");
    expect(await failureOf(orphan)).toBeInstanceOf(TaskFailedError);
    expect(orphan.error).toEqual({
      name: "WorkloadLostError",
      message:
        "the workload was lost: the daemon restarted and the workload did not reconnect within 3000 ms",
    });
    await expect(pendingA.wait()).resolves.toBe("pending a");
    await expect(pendingB.wait()).resolves.toBe("pending b");

    const stored = await getTaskInstance(survivor.id);
    expect(stored?.status).toBe("completed");
    expect(stored?.result).toBe("survived");
    expectAlive(second);
    await expectNothingStuck();
  });

  it("after kill -9: keeps the last output of a task that ended while it was down, and the grace period of a stop it had acknowledged", async () => {
    const listen = `unix:${join(tempDir("nt-sock-"), "daemon.sock")}`;
    const flags = tempDir("nt-flags-");
    const args = ["--stop-grace-ms", "500", "--reconnect-window-ms", "10000"];
    const first = await start({ listen, args });
    connect(first.address);

    const done = join(flags, "ending.done");
    const ending = waitsForFlag(join(flags, "ending"), "ended while away", done);
    const stubborn = ignoresStops(join(flags, "never"));
    await Promise.all([
      until(ending, (i) => i.progress === 0.5, "progress 0.5"),
      until(stubborn, (i) => i.progress === 0.5, "progress 0.5"),
    ]);
    await stopTaskInstance(stubborn.id);
    await until(stubborn, (i) => i.output?.phase === "told to stop", "the task seeing its stop");

    // The daemon dies; meanwhile one task says its last output and returns.
    await first.kill9();
    const returned = fileAppears(done);
    writeFileSync(join(flags, "ending"), "");
    await returned;
    await start({ listen, dataDir: first.dataDir, args });

    await expect(ending.wait()).resolves.toBe("ended while away");
    expect(ending.output).toEqual({ pid: expect.any(Number), phase: "flagged" });
    expect((await getTaskInstance(ending.id))?.output).toEqual({ pid: expect.any(Number), phase: "flagged" });

    // The stop the first daemon acknowledged holds: the next one kills the task that ignores it.
    const failure = await withDeadline(failureOf(stubborn), "the stubborn task to be killed");
    expect(stubborn.status).toBe("cancelled");
    expect(stubborn.error?.name).toBe("TaskStoppedError");
    expect(failure).toBeInstanceOf(TaskCancelledError);
    expect(failure).toMatchObject({ code: "TASK_CANCELLED", instanceId: stubborn.id });
    await processExits(pidOf(stubborn));
    await expectNothingStuck();
  });

  it("on SIGTERM: lets running work end, exits 0, keeps pending work pending, and the next daemon runs it", async () => {
    const listen = `unix:${join(tempDir("nt-sock-"), "daemon.sock")}`;
    const flag = join(tempDir("nt-flags-"), "go");
    const args = ["--concurrency", "1"];
    const first = await start({ listen, args });
    connect(first.address);

    const running = waitsForFlag(flag, "ended in the grace period");
    const pending = quick("ran on the next daemon");
    await until(running, (i) => i.progress === 0.5, "progress 0.5");

    first.child.kill("SIGTERM");
    await first.waitForLog(
      (entry) => entry.msg === "shutting down: no new work, waiting for running instances",
    );
    writeFileSync(flag, "");
    await expect(running.wait()).resolves.toBe("ended in the grace period");
    expect(await first.exited).toBe(0);
    expect(pending.status).toBe("pending");

    const second = await start({ listen, dataDir: first.dataDir, args });
    expect(second.logs).toContainEqual(
      expect.objectContaining({ msg: "recovered unfinished instances", pending: 1, running: 0 }),
    );
    await expect(pending.wait()).resolves.toBe("ran on the next daemon");
    const stored = await getTaskInstance(running.id);
    expect(stored?.status).toBe("completed");
    expect(stored?.result).toBe("ended in the grace period");
    await expectNothingStuck();
  });
});
