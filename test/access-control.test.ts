/**
 * Access control of the platform daemon: tokens checked on every call of both services,
 * tokens bound to deployments that cannot see one another, and `serve` refusing to listen
 * beyond loopback without a token. Real daemon processes; raw gRPC clients where the exact
 * status matters, the SDK where what the user sees matters.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import {
  ExecutorConfigError,
  PlatformExecutor,
  TaskNotFoundError,
  getTaskInstance,
  listTaskDefinitions,
  listTaskInstances,
  setExecutor,
  stopTaskInstance,
  waitForCompletion,
} from "numerous-tasks";
import { afterEach, describe, expect, it } from "vitest";
import {
  AccessControl,
  loadTokenGrants,
  parseTokenGrants,
} from "../executor-platform/daemon/access-control.js";
import {
  type InstanceChanges,
  ListInstancesRequest,
  NewInstance,
  Status,
  type SubmitResponse,
  TaskServiceClient,
  WatchInstancesRequest,
  WorkloadServiceClient,
} from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { WorkloadTokens } from "../executor-platform/daemon/workload-token.js";
import { encodeValue } from "../sdk/codec.js";
import { asksReply, holdsUntilStopped, readsEnvironment, reply } from "./fixtures/security-tasks.js";
import { runCli } from "./helpers/cli-process.js";
import {
  type DaemonProcess,
  type DaemonProcessOptions,
  removeDataDir,
  startDaemon,
} from "./helpers/daemon-process.js";
import { withDeadline } from "./helpers/deadline.js";
import { until } from "./helpers/handles.js";

const TOKEN_A = "token-for-deployment-a";
const TOKEN_B = "token-for-deployment-b";
const TOKEN_ALL = "token-for-every-deployment";
const TOKENS_FILE_TEXT = `# token  deployments
${TOKEN_A} a
${TOKEN_B} b
${TOKEN_ALL} *
`;

const daemons: DaemonProcess[] = [];
const executors: PlatformExecutor[] = [];
const cleanups: Array<() => void | Promise<void>> = [];

afterEach(async () => {
  for (const executor of executors.splice(0)) await executor.close();
  for (const daemon of daemons.splice(0)) {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) {
      // Whatever a failed test left running is stopped, so no workload outlives it.
      for (const deployment of ["a", "b"]) {
        const executor = new PlatformExecutor({
          address: daemon.address,
          accessToken: TOKEN_ALL,
          deploymentId: deployment,
          tlsCaFile: undefined,
        });
        const active = await executor
          .list({ status: ["pending", "running"] })
          .catch(() => ({ instances: [] }));
        await Promise.allSettled(active.instances.map((instance) => executor.stop(instance.id)));
        await executor.close();
      }
      await daemon.stop();
    }
    removeDataDir(daemon.dataDir);
  }
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A daemon whose tokens file grants A → a, B → b and ALL → every deployment. */
async function startSecured(options: DaemonProcessOptions = {}): Promise<DaemonProcess> {
  const file = join(tempDir("nt-tokens-"), "tokens");
  writeFileSync(file, TOKENS_FILE_TEXT);
  const daemon = await startDaemon({ ...options, args: ["--tokens-file", file, ...(options.args ?? [])] });
  daemons.push(daemon);
  return daemon;
}

function executorFor(
  daemon: DaemonProcess,
  accessToken: string | undefined,
  deploymentId: string | undefined,
): PlatformExecutor {
  const executor = new PlatformExecutor({
    address: daemon.address,
    accessToken,
    deploymentId,
    tlsCaFile: undefined,
  });
  executors.push(executor);
  return executor;
}

/** Makes `executor` the SDK's, for the calls that follow. */
function as(executor: PlatformExecutor): PlatformExecutor {
  setExecutor(executor);
  return executor;
}

function metadataOf(token: string | undefined, deployment: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
  if (deployment !== undefined) metadata.set("x-numerous-deployment", deployment);
  return metadata;
}

function rawTaskClient(address: string): TaskServiceClient {
  const client = new TaskServiceClient(address, grpc.credentials.createInsecure());
  cleanups.push(() => client.close());
  return client;
}

interface Outcome {
  readonly code: grpc.status;
  readonly details: string;
}

function unary<T>(
  start: (callback: (error: grpc.ServiceError | null, response: T) => void) => void,
): Promise<Outcome & { response?: T }> {
  return new Promise((resolve) => {
    start((error, response) =>
      resolve(
        error
          ? { code: error.code, details: error.details }
          : { code: grpc.status.OK, details: "", response },
      ),
    );
  });
}

/** Opens a watch; resolves OK with the first message (the stream is live), or the status it ended with. */
function firstWatchMessage(client: TaskServiceClient, metadata: grpc.Metadata): Promise<Outcome> {
  return new Promise((resolve) => {
    const call = client.watchInstances(WatchInstancesRequest.fromPartial({ fromNow: true }), metadata);
    call.on("data", () => {
      resolve({ code: grpc.status.OK, details: "" });
      call.cancel();
    });
    call.on("error", (error: grpc.ServiceError) => resolve({ code: error.code, details: error.details }));
  });
}

function newInstance(id: string): NewInstance {
  return NewInstance.fromPartial({
    id,
    taskName: "reply",
    args: encodeValue(["raw"], "args"),
    createdAtMs: Date.now(),
    module: join(import.meta.dirname, "fixtures/security-tasks.ts"),
  });
}

/** Every TaskService call, made raw with `metadata`. */
const TASK_SERVICE_CALLS: Record<
  string,
  (client: TaskServiceClient, metadata: grpc.Metadata) => Promise<Outcome>
> = {
  Submit: (client, metadata) =>
    unary((cb) =>
      client.submit({ instances: [newInstance(`raw-${Math.random().toString(36).slice(2)}`)] }, metadata, cb),
    ),
  GetInstance: (client, metadata) => unary((cb) => client.getInstance({ id: "some-instance" }, metadata, cb)),
  ListInstances: (client, metadata) =>
    unary((cb) => client.listInstances(ListInstancesRequest.fromPartial({}), metadata, cb)),
  ListDefinitions: (client, metadata) => unary((cb) => client.listDefinitions({}, metadata, cb)),
  StopInstance: (client, metadata) =>
    unary((cb) => client.stopInstance({ id: "some-instance" }, metadata, cb)),
  WatchInstances: (client, metadata) => firstWatchMessage(client, metadata),
};

describe("AccessControl", () => {
  const grants = [
    { token: TOKEN_A, deployments: ["a"] },
    { token: TOKEN_B, deployments: ["b", "shared"] },
    { token: TOKEN_A, deployments: ["a2"] },
    { token: TOKEN_ALL, deployments: ["*"] },
  ];
  const access = new AccessControl(grants);

  it("lets a token use exactly its deployments, whichever line grants them", () => {
    expect(access.check(`Bearer ${TOKEN_A}`, "a")).toEqual({ ok: true, deployment: "a" });
    // The same token on two lines: both grants hold, not only the last one compared.
    expect(access.check(`Bearer ${TOKEN_A}`, "a2")).toEqual({ ok: true, deployment: "a2" });
    expect(access.check(`Bearer ${TOKEN_B}`, "shared")).toEqual({ ok: true, deployment: "shared" });
    expect(access.check(`Bearer ${TOKEN_ALL}`, "anything")).toEqual({ ok: true, deployment: "anything" });
    expect(access.check(`bearer ${TOKEN_ALL}`, undefined)).toEqual({ ok: true, deployment: "default" });
    expect(access.check(`Bearer ${TOKEN_B}`, "a")).toEqual({
      ok: false,
      reason: "permission-denied",
      message: 'this access token may not use deployment "a" (check NUMEROUS_DEPLOYMENT_ID)',
    });
    expect(access.check(`Bearer ${TOKEN_B}`, undefined)).toMatchObject({
      ok: false,
      reason: "permission-denied",
      message: expect.stringContaining("NUMEROUS_DEPLOYMENT_ID"),
    });
  });

  it("tells a missing token from a wrong one, and takes no prefix or near miss for the token", () => {
    expect(access.check(undefined, "a")).toEqual({
      ok: false,
      reason: "unauthenticated",
      message: "missing access token (set NUMEROUS_API_ACCESS_TOKEN)",
    });
    expect(access.check("Bearer ", "a")).toMatchObject({
      reason: "unauthenticated",
      message: expect.stringContaining("missing"),
    });
    expect(access.check(TOKEN_A, "a")).toMatchObject({
      reason: "unauthenticated",
      message: expect.stringContaining("missing"),
    });
    for (const near of [TOKEN_A.slice(0, -1), `${TOKEN_A}x`, TOKEN_A.toUpperCase(), "x"]) {
      expect(access.check(`Bearer ${near}`, "a")).toEqual({
        ok: false,
        reason: "unauthenticated",
        message: "wrong access token (check NUMEROUS_API_ACCESS_TOKEN)",
      });
    }
  });

  it("lets everyone in when no token is configured (the daemon then keeps to loopback)", () => {
    const open = new AccessControl([]);
    expect(open.enabled).toBe(false);
    expect(open.check(undefined, undefined)).toEqual({ ok: true, deployment: "default" });
  });

  it("reads tokens files by line and the variable by entry, naming what is malformed", () => {
    expect(parseTokenGrants(TOKENS_FILE_TEXT, "tokens")).toEqual([
      { token: TOKEN_A, deployments: ["a"] },
      { token: TOKEN_B, deployments: ["b"] },
      { token: TOKEN_ALL, deployments: ["*"] },
    ]);
    expect(parseTokenGrants(`${TOKEN_A} a,b ; ${TOKEN_B} c`, "NUMEROUS_EXECUTOR_TOKENS", "variable")).toEqual(
      [
        { token: TOKEN_A, deployments: ["a", "b"] },
        { token: TOKEN_B, deployments: ["c"] },
      ],
    );
    expect(() => parseTokenGrants(`${TOKEN_A} a\n\nshort a\n`, "/etc/tokens")).toThrow(
      /^\/etc\/tokens, line 3: expected/,
    );
    expect(() => parseTokenGrants(`${TOKEN_A}\n`, "/etc/tokens")).toThrow(/line 1/);
    expect(() => parseTokenGrants(`${TOKEN_A} a b\n`, "/etc/tokens")).toThrow(/line 1/);
    expect(() => parseTokenGrants(`${TOKEN_A} ,\n`, "/etc/tokens")).toThrow(/line 1/);
    expect(() => loadTokenGrants({ token: "" })).toThrow(
      /--token \(NUMEROUS_EXECUTOR_TOKEN\) must be at least 8 characters/,
    );
    expect(() => loadTokenGrants({ tokens: " ; # none" })).toThrow(/holds no tokens/);
  });
});

describe("serve refuses what would leave the daemon open", () => {
  it("exits 2 on a non-loopback address without a token, naming --token and --insecure", async () => {
    const dataDir = tempDir("nt-refused-");
    for (const env of [{}, { NUMEROUS_EXECUTOR_INSECURE: "false" }]) {
      const result = await runCli(["serve", "--listen", "0.0.0.0:0", "--data-dir", dataDir], { env });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("refusing to listen on 0.0.0.0:0 without a token");
      expect(result.stderr).toContain("--token");
      expect(result.stderr).toContain("--insecure");
    }
    const empty = await runCli(["serve", "--listen", "0.0.0.0:0", "--data-dir", dataDir], {
      env: { NUMEROUS_EXECUTOR_TOKEN: "" },
    });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("NUMEROUS_EXECUTOR_TOKEN) must be at least 8 characters");
  });

  it("exits 2 on a malformed tokens file, naming the file and the line", async () => {
    const file = join(tempDir("nt-tokens-"), "tokens");
    writeFileSync(file, `# tokens\n${TOKEN_A} a\n${TOKEN_B}\n`);
    const result = await runCli(["serve", "--data-dir", tempDir("nt-refused-"), "--tokens-file", file]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${file}, line 3: expected "<token of 8+ characters> <deployment>`);
    const missing = await runCli([
      "serve",
      "--data-dir",
      tempDir("nt-refused-"),
      "--tokens-file",
      `${file}.missing`,
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`bad access tokens: ENOENT`);
  });

  it("starts beyond loopback with --insecure, warning that anyone may call", async () => {
    for (const how of [{ args: ["--insecure"] }, { env: { NUMEROUS_EXECUTOR_INSECURE: "true" } }]) {
      const daemon = await startDaemon({ listen: "0.0.0.0:0", ...how });
      daemons.push(daemon);
      await daemon.waitForLog(
        (entry) => typeof entry.msg === "string" && entry.msg.startsWith("--insecure: anyone who can reach"),
      );
      const port = daemon.address.slice(daemon.address.lastIndexOf(":") + 1);
      // Reached through the loopback interface, the open daemon serves.
      const openExecutor = executorFor({ ...daemon, address: `127.0.0.1:${port}` }, undefined, undefined);
      await expect(openExecutor.listDefinitions()).resolves.toEqual([]);
    }
  });
});

describe("every TaskService call checks the token", () => {
  it("answers a missing token, a wrong one and another deployment's with UNAUTHENTICATED or PERMISSION_DENIED", async () => {
    const daemon = await startSecured();
    const client = rawTaskClient(daemon.address);
    const cases = [
      {
        credentials: [undefined, "a"],
        code: grpc.status.UNAUTHENTICATED,
        details: "missing access token (set NUMEROUS_API_ACCESS_TOKEN)",
      },
      {
        credentials: ["not-a-token-at-all", "a"],
        code: grpc.status.UNAUTHENTICATED,
        details: "wrong access token (check NUMEROUS_API_ACCESS_TOKEN)",
      },
      {
        credentials: [TOKEN_B, "a"],
        code: grpc.status.PERMISSION_DENIED,
        details: 'this access token may not use deployment "a" (check NUMEROUS_DEPLOYMENT_ID)',
      },
      {
        credentials: [TOKEN_B, undefined],
        code: grpc.status.PERMISSION_DENIED,
        details:
          "this access token may not use the default deployment: set NUMEROUS_DEPLOYMENT_ID to a deployment it may use",
      },
    ] as const;
    for (const [name, call] of Object.entries(TASK_SERVICE_CALLS)) {
      for (const { credentials, code, details } of cases) {
        const outcome = await call(client, metadataOf(credentials[0], credentials[1]));
        expect({ call: name, credentials, ...outcome }).toEqual({ call: name, credentials, code, details });
      }
      // The right token for the deployment goes through.
      expect({ call: name, ...(await call(client, metadataOf(TOKEN_A, "a"))) }).toMatchObject({
        call: name,
        code: grpc.status.OK,
      });
      expect({ call: name, ...(await call(client, metadataOf(TOKEN_ALL, "b"))) }).toMatchObject({
        call: name,
        code: grpc.status.OK,
      });
    }
    // Refused calls ran nothing: deployment a holds only the one instance submitted with its token.
    const listed = await unary<{ instances: unknown[] }>((cb) =>
      client.listInstances(ListInstancesRequest.fromPartial({}), metadataOf(TOKEN_A, "a"), cb),
    );
    expect(listed.response?.instances).toHaveLength(1);
  });

  it("through the SDK: the instance fails with ExecutorConfigError naming the variable, every call rejects with it, nothing hangs", async () => {
    const daemon = await startSecured();
    const refusals = [
      { token: undefined, deployment: "a", says: "missing access token (set NUMEROUS_API_ACCESS_TOKEN)" },
      { token: "not-a-token-at-all", deployment: "a", says: "wrong access token" },
      { token: TOKEN_B, deployment: "a", says: 'may not use deployment "a"' },
    ];
    // Each handle belongs to the executor that was the SDK's when it was made.
    const submitted = refusals.map((refusal) => {
      as(executorFor(daemon, refusal.token, refusal.deployment));
      return { ...refusal, instance: reply("refused") };
    });
    for (const { instance, says } of submitted) {
      // Nothing hangs: a wait that never ends fails here, naming the refusal.
      const error = await withDeadline(
        instance.wait().then(
          () => undefined,
          (thrown: unknown) => thrown,
        ),
        `the instance refused for "${says}" to fail`,
      );
      // The SDK's own error, as for an unreachable daemon: the task never ran.
      expect(error).toBeInstanceOf(ExecutorConfigError);
      expect((error as ExecutorConfigError).variable).toBe("NUMEROUS_API_ACCESS_TOKEN");
      expect((error as ExecutorConfigError).message).toContain(says);
      expect(instance.status).toBe("failed");
      expect(instance.error).toMatchObject({ name: "ExecutorConfigError", code: "EXECUTOR_CONFIG" });
      expect(instance.error?.message).toMatch(
        /^NUMEROUS_API_ACCESS_TOKEN: the daemon at 127\.0\.0\.1:\d+ refused the call: /,
      );
      expect(instance.error?.message).toContain(says);
    }
    for (const { token, deployment, says } of refusals) {
      as(executorFor(daemon, token, deployment));
      const calls = await withDeadline(
        Promise.allSettled([
          getTaskInstance("some-instance"),
          listTaskInstances(),
          listTaskDefinitions(),
          stopTaskInstance("some-instance"),
          waitForCompletion("some-instance"),
        ]),
        `every call refused for "${says}" to reject`,
      );
      for (const call of calls) {
        expect(call.status).toBe("rejected");
        const reason = call.status === "rejected" ? (call.reason as ExecutorConfigError) : undefined;
        expect(reason).toBeInstanceOf(ExecutorConfigError);
        expect(reason?.variable).toBe("NUMEROUS_API_ACCESS_TOKEN");
        expect(reason?.message).toContain(says);
      }
    }
  });
});

describe("deployments cannot see one another", () => {
  it("another deployment's token can neither get, list, stop, wait on, watch nor take over an instance, nor see its definitions", async () => {
    const daemon = await startSecured();
    const a = executorFor(daemon, TOKEN_A, "a");
    const b = executorFor(daemon, TOKEN_B, "b");
    as(a);
    const held = holdsUntilStopped("a's value");
    await until(held, (instance) => instance.progress === 0.5, "progress 0.5");
    as(b);
    await expect(reply("b's value").wait()).resolves.toBe("b's value");

    // B's watch streams, one of everything and one naming a's instance, are live before a changes.
    const client = rawTaskClient(daemon.address);
    const seen: string[] = [];
    const bWatchesAll = client.watchInstances(
      WatchInstancesRequest.fromPartial({ fromNow: true }),
      metadataOf(TOKEN_B, "b"),
    );
    const bWatchesIds = client.watchInstances(
      WatchInstancesRequest.fromPartial({ ids: [held.id], fromNow: true }),
      metadataOf(TOKEN_B, "b"),
    );
    for (const call of [bWatchesAll, bWatchesIds]) cleanups.push(() => call.cancel());
    const live = [bWatchesAll, bWatchesIds].map(
      (call) =>
        new Promise<void>((resolve) => {
          call.on("data", (changes: InstanceChanges) => {
            seen.push(...changes.instances.map((instance) => instance.id));
            resolve();
          });
          call.on("error", () => {});
        }),
    );
    await withDeadline(Promise.all(live), "B's watch streams to be live");

    // Invisible to B through the SDK.
    as(b);
    expect(await getTaskInstance(held.id)).toBeUndefined();
    expect((await listTaskInstances()).map((instance) => instance.id)).not.toContain(held.id);
    await expect(waitForCompletion(held.id)).rejects.toBeInstanceOf(TaskNotFoundError);
    await expect(b.stop(held.id)).resolves.toBe(false);
    await stopTaskInstance(held.id);
    expect((await listTaskDefinitions()).map((definition) => definition.name)).toEqual(["reply"]);
    // A cursor from a's instances is not B's to use.
    await expect(listTaskInstances({ cursor: held.id })).rejects.toThrow(
      /is not an instance id of this deployment/,
    );

    // Nor can B take a's id for an instance of its own.
    const takeover = await unary<SubmitResponse>((cb) =>
      client.submit({ instances: [newInstance(held.id)] }, metadataOf(TOKEN_B, "b"), cb),
    );
    expect(takeover.response?.results[0]?.outcome).toMatchObject({
      $case: "error",
      value: { name: "TaskInputError", message: `instance id ${held.id} is taken` },
    });

    // a's instance ran on, untouched; its own deployment and the all-deployments token see it.
    as(a);
    expect((await getTaskInstance(held.id))?.status).toBe("running");
    expect((await listTaskDefinitions()).map((definition) => definition.name)).toEqual(["holdsUntilStopped"]);
    expect((await executorFor(daemon, TOKEN_ALL, "a").get(held.id))?.status).toBe("running");
    expect(await executorFor(daemon, TOKEN_ALL, undefined).get(held.id)).toBeUndefined();
    await stopTaskInstance(held.id);
    await expect(held.wait()).resolves.toBe("a's value");

    // A change in b after a's instance ended: B's streams, in sequence order, had their chance.
    as(b);
    const later = reply("after a ended");
    const sawLater = new Promise<void>((resolve) => {
      bWatchesAll.on("data", (changes: InstanceChanges) => {
        if (
          changes.instances.some(
            (instance) => instance.id === later.id && instance.status === Status.STATUS_COMPLETED,
          )
        )
          resolve();
      });
    });
    await later.wait();
    await withDeadline(sawLater, "B's stream to see its own later instance complete");
    expect(seen).not.toContain(held.id);
    expect(seen).toContain(later.id);
  });

  it("a workload cannot read the daemon's tokens, and runs as its own deployment", async () => {
    const file = join(tempDir("nt-tokens-"), "tokens");
    writeFileSync(file, TOKENS_FILE_TEXT);
    const daemon = await startDaemon({
      env: {
        NUMEROUS_EXECUTOR_TOKEN: TOKEN_ALL,
        NUMEROUS_EXECUTOR_TOKENS_FILE: file,
        NUMEROUS_EXECUTOR_TOKENS: `${TOKEN_B}-2 b`,
      },
    });
    daemons.push(daemon);
    as(executorFor(daemon, TOKEN_B, "b"));
    const names = [
      "NUMEROUS_EXECUTOR_TOKEN",
      "NUMEROUS_EXECUTOR_TOKENS",
      "NUMEROUS_EXECUTOR_TOKENS_FILE",
      "NUMEROUS_DEPLOYMENT_ID",
      "NUMEROUS_API_ACCESS_TOKEN",
    ];
    const seen = await readsEnvironment(names).wait();
    expect(seen).toEqual({
      NUMEROUS_EXECUTOR_TOKEN: null,
      NUMEROUS_EXECUTOR_TOKENS: null,
      NUMEROUS_EXECUTOR_TOKENS_FILE: null,
      NUMEROUS_DEPLOYMENT_ID: "b",
      // Its own, good for its deployment only (see the next test), none of the daemon's.
      NUMEROUS_API_ACCESS_TOKEN: expect.any(String),
    });
    expect([TOKEN_ALL, TOKEN_B, `${TOKEN_B}-2`, TOKEN_A]).not.toContain(seen.NUMEROUS_API_ACCESS_TOKEN);
  });

  it("a task runs another task of its own deployment; its token is good for that deployment and no other", async () => {
    const daemon = await startSecured();
    as(executorFor(daemon, TOKEN_B, "b"));
    const outer = asksReply({ from: "inside" });
    await expect(outer.wait()).resolves.toEqual({ from: "inside" });
    // The inner instance is the deployment's own, listed beside the outer one.
    const listed = await listTaskInstances();
    expect(listed.map((instance) => instance.taskName).sort()).toEqual(["asksReply", "reply"]);

    const token = (await readsEnvironment(["NUMEROUS_API_ACCESS_TOKEN"]).wait())
      .NUMEROUS_API_ACCESS_TOKEN as string;
    const own = executorFor(daemon, token, "b");
    await expect(own.list({})).resolves.toMatchObject({ instances: expect.any(Array) });
    const other = executorFor(daemon, token, "a");
    await expect(other.list({})).rejects.toThrow(ExecutorConfigError);
  });
});

describe("the workload service checks the workload token", () => {
  it("refuses a hello with no token, a client's access token, or another deployment's instance token, with PERMISSION_DENIED", async () => {
    const daemon = await startSecured();
    as(executorFor(daemon, TOKEN_A, "a"));
    const inA = holdsUntilStopped("a");
    as(executorFor(daemon, TOKEN_B, "b"));
    const inB = holdsUntilStopped("b");
    await Promise.all(
      [inA, inB].map((instance) => until(instance, (i) => i.progress === 0.5, "progress 0.5")),
    );
    const tokens = WorkloadTokens.fromDataDir(daemon.dataDir);
    const client = new WorkloadServiceClient(daemon.address, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());
    // Every progress each instance shows from now to its end.
    const heard = new Map([inA, inB].map((instance) => [instance, [] as number[]]));
    for (const [instance, progress] of heard) instance.onChange((changed) => progress.push(changed.progress));

    for (const workloadToken of ["", TOKEN_ALL, tokens.forInstance(inB.id)]) {
      const call = client.connect();
      const ended = new Promise<Outcome>((resolve) =>
        call.on("error", (error: grpc.ServiceError) => resolve({ code: error.code, details: error.details })),
      );
      call.write({
        kind: { $case: "hello", value: { workloadToken, instanceId: inA.id, pid: 1, stopRequestedAtMs: 0 } },
      });
      // What it would report, were it let in.
      call.write({ kind: { $case: "progress", value: { instanceId: inA.id, value: 0.9 } } });
      await expect(withDeadline(ended, "the refusal of the hello")).resolves.toEqual({
        code: grpc.status.PERMISSION_DENIED,
        details: "the workload token does not allow this instance",
      });
    }
    // Neither instance heard any of it.
    for (const [instance, executor] of [
      [inA, executorFor(daemon, TOKEN_A, "a")],
      [inB, executorFor(daemon, TOKEN_B, "b")],
    ] as const) {
      expect(await executor.get(instance.id)).toMatchObject({ status: "running", progress: 0.5 });
      await executor.stop(instance.id);
    }
    await expect(inA.wait()).resolves.toBe("a");
    await expect(inB.wait()).resolves.toBe("b");
    // Their ends came after anything the refused streams could have reported: none of it showed.
    for (const progress of heard.values()) expect(progress).not.toContain(0.9);
  });
});
