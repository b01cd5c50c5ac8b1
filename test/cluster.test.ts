/**
 * Several daemons on one PostgreSQL (started by this file): one executor, whichever daemon a
 * client talks to.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { TaskFailedError, getTaskInstance, listTaskInstances, setExecutor } from "numerous-tasks";
import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CONTRACT_CONCURRENCY, describeExecutorContract } from "./executor-contract.js";
import { countSlowly, holdUntilStopped, ignoresStops, recordRun } from "./fixtures/cluster-tasks.js";
import { printsAtExit } from "./fixtures/log-tasks.js";
import { collect, linesOf } from "./executor-contract-logs.js";
import { type TestPostgres, startPostgres } from "./helpers/embedded-postgres.js";
import { type Cluster, clusterOf, gatedDatabase, startCluster as startClusterOn } from "./helpers/cluster.js";
import { type DaemonProcess, startDaemon } from "./helpers/daemon-process.js";
import { pollUntil } from "./helpers/deadline.js";
import {
  TaskServiceClient,
  WatchInstancesRequest,
} from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";

/** Short, so a test of the kill is short; long enough for a task that does stop to end. */
const STOP_GRACE_MS = 2000;

let postgres: TestPostgres;

beforeAll(async () => {
  postgres = await startPostgres();
});

afterAll(async () => {
  await postgres?.stop();
});

function startCluster(concurrencies: readonly number[], extra: readonly string[] = []): Promise<Cluster> {
  return startClusterOn(postgres, concurrencies, extra, STOP_GRACE_MS);
}

// The client talks to a daemon that runs nothing; the two others run the workloads.
describeExecutorContract(
  "a cluster of three daemons on PostgreSQL, client on the one that runs nothing",
  async () => {
    const cluster = await startCluster([0, CONTRACT_CONCURRENCY / 2, CONTRACT_CONCURRENCY / 2]);
    return { executor: cluster.client(0), close: () => cluster.close() };
  },
  { workloads: { stopGraceMs: STOP_GRACE_MS } },
);

describe("cluster faults", () => {
  let cluster: Cluster | undefined;

  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it("runs each instance exactly once when two daemons race for them", async () => {
    cluster = await startCluster([4, 4], ["--workload-mode", "pool"]);
    setExecutor(cluster.client(0));
    const dir = mkdtempSync(join(tmpdir(), "nt-ledger-"));
    const ledger = join(dir, "runs.txt");
    try {
      const instances = Array.from({ length: 200 }, (_, i) => recordRun(ledger, i));
      const results = await Promise.all(instances.map((instance) => instance.wait()));
      expect(results).toEqual(Array.from({ length: 200 }, (_, i) => i * 2));
      const runs = readFileSync(ledger, "utf8")
        .trim()
        .split("\n")
        .map((line) => line.split(" "));
      const ids = runs.map(([id]) => id);
      expect(new Set(ids).size).toBe(200);
      expect(ids.length).toBe(200);
      expect(ids.sort()).toEqual(instances.map((instance) => instance.id).sort());
      // Both daemons took a share.
      expect(new Set(runs.map(([, daemon]) => daemon)).size).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("fails what a SIGKILLed daemon ran after its lease, naming it, and lets the others take its pending work", async () => {
    cluster = await startCluster([0, 1, 1], ["--lease-ms", "1000"]);
    const [front, doomed, survivor] = cluster.daemons as [DaemonProcess, DaemonProcess, DaemonProcess];
    setExecutor(cluster.client(0));
    const held = [holdUntilStopped(), holdUntilStopped()];
    // Both workers busy: which daemon runs which is up to the claims.
    const daemonsOf = await Promise.all(
      held.map(async (instance) => {
        for await (const snapshot of instance)
          if (snapshot.output !== undefined) return snapshot.output.daemon as string;
        throw new Error("ended before it started");
      }),
    );
    const doomedSocket = `unix:${join(doomed.dataDir, "workloads.sock")}`;
    const onDoomed = held[daemonsOf.indexOf(doomedSocket)];
    const onSurvivor = held[daemonsOf.indexOf(`unix:${join(survivor.dataDir, "workloads.sock")}`)];
    expect(onDoomed).toBeDefined();
    expect(onSurvivor).toBeDefined();
    const doomedName = (await doomed.waitForLog((entry) => entry.msg === "joined the cluster"))
      .owner as string;
    const waiting = countSlowly(2, 5); // pending: both slots are full

    await doomed.kill9();
    const error = await onDoomed?.wait().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskFailedError);
    expect((error as TaskFailedError).error.message).toContain(doomedName);
    expect(onDoomed?.status).toBe("failed");

    // The survivor is still busy; stopping its task frees the slot for the pending one.
    await onSurvivor?.stop();
    expect(await onSurvivor?.wait()).toBe("stopped");
    expect(await waiting.wait()).toBe(2);
    expect(front.child.exitCode).toBeNull();
    const stuck = await listTaskInstances({ status: ["pending", "running"] });
    expect(stuck).toEqual([]);
  });

  it("cancels, not retries, an instance whose daemon took its stop and was SIGKILLed before it ended", async () => {
    // A long grace, so the workload is still running when its daemon dies; the stop is taken by
    // the very daemon that runs it (its own client), and the other daemon runs nothing.
    cluster = await startClusterOn(postgres, [1, 0], ["--lease-ms", "1000"], 60_000);
    const [holder] = cluster.daemons as [DaemonProcess, DaemonProcess];
    setExecutor(cluster.client(0));
    const instance = ignoresStops.with({ retry: { maxAttempts: 3, initialDelayMs: 0 } })();
    for await (const snapshot of instance) if (snapshot.output !== undefined) break;
    await instance.stop();
    // Kept on the row, then the daemon dies before the workload's grace is over.
    const db = new pg.Client(cluster.url);
    await db.connect();
    try {
      for (;;) {
        const marked = await db.query("SELECT stop_requested FROM instances WHERE id = $1", [instance.id]);
        if (marked.rows[0]?.stop_requested === true) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await db.end();
    }
    await holder.kill9();

    setExecutor(cluster.client(1));
    const seen = await getTaskInstance(instance.id);
    expect(seen).toBeDefined();
    const final = await seen?.wait().then(
      () => seen.status,
      () => seen.status,
    );
    expect(final).toBe("cancelled");
    expect(seen?.attempt ?? 1).toBe(1);
  });

  it("never begins an instance whose stop was kept on its row while its daemon was cut off the database", async () => {
    // The runner's workload is held between its spawn and its hello; meanwhile the runner is cut
    // off PostgreSQL and the instance is stopped through the other daemon (kept on the row, the
    // event lost). Let go during the cut, the workload must not begin the task: its daemon cannot
    // tell whether it was stopped until it reaches the database again.
    const { url, gatedUrl, gate } = await gatedDatabase(postgres);
    const hold = mkdtempSync(join(tmpdir(), "hold-start-"));
    const ledger = join(hold, "ledger");
    const args = ["--lease-ms", "10000", "--workload-mode", "process", "--warm-workloads", "0"];
    const stopper = await startDaemon({ args: ["--store", url, "--concurrency", "0", ...args] });
    const runner = await startDaemon({
      args: ["--store", gatedUrl, "--concurrency", "1", ...args],
      env: {
        NODE_OPTIONS: `--import ${pathToFileURL(join(import.meta.dirname, "fixtures/hold-workload-start.mjs")).href}`,
        HOLD_WORKLOAD_START: hold,
      },
    });
    cluster = clusterOf([stopper, runner], url, async () => {
      await gate.close();
      rmSync(hold, { recursive: true, force: true });
    });
    setExecutor(cluster.client(0));
    const instance = recordRun(ledger, 21);
    await pollUntil(() => existsSync(join(hold, "spawned")), "the runner's workload to be spawned");
    // The claim was a while ago (its proof that no stop was kept is stale); the time passing is
    // the point here, not a synchronisation.
    await new Promise((resolve) => setTimeout(resolve, 700));
    gate.shut();
    await instance.stop();
    writeFileSync(join(hold, "go"), "");
    // Either it holds the workload at its start, or (the fault) the task runs; the other wait
    // is left to lapse.
    const held = runner.waitForLog(
      (entry) => entry.msg === "workloads wait to begin: the store cannot say whether they were stopped",
      "the runner to hold the workload at its start",
    );
    const ran = pollUntil(() => existsSync(ledger), "the task to run");
    for (const wait of [held, ran]) wait.catch(() => {});
    await Promise.race([held, ran]);
    gate.open();
    await expect(instance.wait()).rejects.toThrow();
    expect(instance.status).toBe("cancelled");
    expect(existsSync(ledger), "the task ran after its stop was acknowledged").toBe(false);
    expect(runner.child.exitCode, "the runner exited").toBeNull();
  }, 120_000);

  it("passes a change on to other daemons once an older transaction that announces nothing ends", async () => {
    // A daemon shows another's change once every older transaction on the server has ended. One
    // that sends no event (another application's, here) must not leave the change unseen.
    cluster = await startCluster([0, 1]);
    setExecutor(cluster.client(0));
    const holder = new pg.Client({ connectionString: cluster.url });
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT pg_current_xact_id()");
      const held = holdUntilStopped();
      // Daemon 1 ran it and saved its output while the transaction was open.
      const deadline = Date.now() + 30_000;
      for (;;) {
        const found = await holder.query("SELECT 1 FROM instances WHERE id = $1 AND output IS NOT NULL", [
          held.id,
        ]);
        if (found.rows.length > 0) break;
        expect(Date.now(), "daemon 1 never saved the output").toBeLessThan(deadline);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await holder.query("COMMIT");
      let timer: NodeJS.Timeout | undefined;
      const seen = await Promise.race([
        (async () => {
          for await (const snapshot of held) if (snapshot.output !== undefined) return snapshot.output;
          return undefined;
        })(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error("daemon 0 never passed the output on")), 15_000);
        }),
      ]).finally(() => clearTimeout(timer));
      expect(seen).toMatchObject({
        daemon: `unix:${join((cluster.daemons[1] as DaemonProcess).dataDir, "workloads.sock")}`,
      });
      await held.stop();
      expect(await held.wait()).toBe("stopped");
    } finally {
      await holder.end();
    }
  });

  it("reads a log on another daemon to its last line, written as the workload exits after its end", async () => {
    cluster = await startCluster([0, 1]);
    setExecutor(cluster.client(0));
    // The line comes 2.5 s after the end is stored: longer than any fixed wait a reader might guess.
    const followed = printsAtExit("lingers", 2500);
    const follow = collect(followed.logs({ follow: true }), "the follow to the end of the log");
    expect(await followed.wait()).toBe("lingers");
    expect(linesOf(await follow)).toEqual(["lingers first", "lingers at exit"]);
    const read = printsAtExit("read", 2500);
    await read.wait();
    expect(linesOf(await collect(read.logs(), "a read once it ended"))).toEqual([
      "read first",
      "read at exit",
    ]);
    expect(linesOf(await collect(read.logs({ tail: 1 }), "its last line"))).toEqual(["read at exit"]);
  });

  it("refuses a watch of an id no instance can have (a NUL byte) and keeps serving everyone", async () => {
    cluster = await startCluster([0, 2]);
    setExecutor(cluster.client(0));
    const client = new TaskServiceClient(
      (cluster.daemons[0] as DaemonProcess).address,
      grpc.credentials.createInsecure(),
    );
    try {
      const refused = await new Promise<grpc.ServiceError>((resolve, reject) => {
        const call = client.watchInstances(WatchInstancesRequest.fromPartial({ ids: ["a\u0000b"] }));
        call.on("data", () => reject(new Error("a watch of a NUL id was served")));
        call.on("error", resolve);
      });
      expect(refused.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(refused.details).toContain("not an instance id");
      const found = await new Promise<unknown>((resolve, reject) =>
        client.getInstance({ id: "a\u0000b" }, (error, response) =>
          error ? reject(error) : resolve(response?.instance),
        ),
      );
      expect(found).toBeUndefined();
      // The others' watches and reads go on.
      expect(await countSlowly(2, 1).wait()).toBe(2);
    } finally {
      client.close();
    }
  });

  it("rides out a database restart: running work finishes, nothing is lost, new work runs", async () => {
    cluster = await startCluster([0, 2]);
    setExecutor(cluster.client(0));
    const slow = countSlowly(20, 50);
    for await (const snapshot of slow) if (snapshot.progress > 0) break;
    await postgres.restart();
    expect(await slow.wait()).toBe(20);
    const after = countSlowly(2, 1);
    expect(await after.wait()).toBe(2);
    const listed = await listTaskInstances();
    expect(listed.map((instance) => [instance.id, instance.status])).toEqual([
      [slow.id, "completed"],
      [after.id, "completed"],
    ]);
  });

  /**
   * As a new user would try it: three fresh daemons, pool workloads, PostgreSQL stopped under
   * running work and started again `outageMs` later, new calls made while it is down and right
   * after it is back. Every call completes, no daemon exits, and no daemon reaps another.
   */
  async function rideOutAnOutage(leaseMs: number, outageMs: number): Promise<void> {
    cluster = await startCluster([2, 2, 2], ["--lease-ms", String(leaseMs), "--workload-mode", "pool"]);
    setExecutor(cluster.client(0));
    const running = Array.from({ length: 6 }, () => countSlowly(40, 50));
    await Promise.all(
      running.map(async (instance) => {
        for await (const snapshot of instance) if (snapshot.progress > 0) break;
      }),
    );
    const duringOutage: Array<ReturnType<typeof countSlowly>> = [];
    await postgres.restart({
      whileDown: async () => {
        for (let i = 0; i < 4; i++) duringOutage.push(countSlowly(2, 1));
        // The outage itself: how long the database stays down is the scenario, not a wait for an event.
        await new Promise((resolve) => setTimeout(resolve, outageMs));
      },
    });
    const afterOutage = Array.from({ length: 4 }, () => countSlowly(2, 1));
    const all = [...running, ...duringOutage, ...afterOutage];
    const results = await Promise.allSettled(all.map((instance) => instance.wait()));
    expect(
      results.map((result) => (result.status === "fulfilled" ? result.value : String(result.reason))),
    ).toEqual([...running.map(() => 40), ...duringOutage.map(() => 2), ...afterOutage.map(() => 2)]);
    for (const daemon of cluster.daemons) {
      expect(daemon.child.exitCode, "a daemon exited").toBeNull();
      expect(daemon.logs.filter((entry) => Number(entry.level) >= 60)).toEqual([]);
      expect(daemon.logs.filter((entry) => entry.msg === "reaped the work of lost daemons")).toEqual([]);
      // An outage is said once, not at every save that wanted a claim (it once was hundreds a second).
      expect(
        daemon.logs.filter((entry) => entry.msg === "could not claim pending instances").length,
      ).toBeLessThanOrEqual(2);
    }
    const listed = await listTaskInstances();
    expect(listed.map((instance) => instance.status)).toEqual(all.map(() => "completed"));
  }

  it("loses nothing and presumes no daemon dead when the database is down for less than a lease", async () => {
    await rideOutAnOutage(4000, 3000);
  }, 120_000);

  it("presumes no daemon dead that reaches the database again a little later than the others", async () => {
    // Daemon 1 reaches PostgreSQL through a gate that stays shut for 0.75 lease after the server
    // is back. Its lease ran out during the outage; daemon 0 must not reap it before it had a
    // full lease of its own to renew in.
    const leaseMs = 2000;
    const { url, gatedUrl, gate } = await gatedDatabase(postgres);
    const args = ["--lease-ms", String(leaseMs), "--workload-mode", "pool", "--stop-grace-ms", "2000"];
    const direct = await startDaemon({ args: ["--store", url, "--concurrency", "0", ...args] });
    const behindGate = await startDaemon({
      args: ["--store", gatedUrl, "--concurrency", "2", ...args],
    });
    cluster = clusterOf([direct, behindGate], url, () => gate.close());
    setExecutor(cluster.client(0));
    const running = [countSlowly(60, 50), countSlowly(60, 50)];
    await Promise.all(
      running.map(async (instance) => {
        for await (const snapshot of instance) if (snapshot.progress > 0) break;
      }),
    );
    await postgres.restart({
      whileDown: async () => {
        gate.shut();
        await new Promise((resolve) => setTimeout(resolve, leaseMs * 1.5));
      },
    });
    await new Promise((resolve) => setTimeout(resolve, leaseMs * 0.75));
    gate.open();
    expect(await Promise.all(running.map((instance) => instance.wait()))).toEqual([60, 60]);
    expect(behindGate.child.exitCode, "the daemon behind the gate exited").toBeNull();
    expect(direct.logs.filter((entry) => entry.msg === "reaped the work of lost daemons")).toEqual([]);
  }, 120_000);

  it("loses nothing and presumes no daemon dead when the database is down for longer than a lease", async () => {
    // Nobody can reap while the database is down, and after it each daemon waits a full lease of
    // reaching it before it judges the others, by which time each has renewed.
    await rideOutAnOutage(1500, 4000);
  }, 120_000);
});
