/**
 * The daemon's HTTP port and its Prometheus metrics (SPEC §6): `serve --http`, `GET /metrics`
 * checked against a known load, gauges that go back to zero, and the same access rules as gRPC.
 * Real daemon processes; /metrics read over real HTTP and parsed.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  PlatformExecutor,
  type TaskInstanceState,
  setExecutor,
  stopTaskInstance,
  waitForCompletion,
} from "numerous-tasks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DaemonMetrics, OTHER_TASKS } from "../executor-platform/daemon/daemon-metrics.js";
import type { StoredInstance } from "../executor-platform/store/store.js";
import { add, throwsError, waitForStop } from "./fixtures/contract-tasks.js";
import { exitsWithCode } from "./fixtures/fault-tasks.js";
import { failsOnce } from "./fixtures/telemetry-tasks.js";
import { runCli } from "./helpers/cli-process.js";
import { type Cluster, startCluster } from "./helpers/cluster.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";
import { withDeadline } from "./helpers/deadline.js";
import { type TestPostgres, startPostgres } from "./helpers/embedded-postgres.js";
import { until } from "./helpers/handles.js";
import { type Sample, parsePrometheusText, sampleSum, sampleValue } from "./helpers/prometheus-text.js";

const OPERATOR_TOKEN = "operator-token-all-deployments";
const TEAM_TOKEN = "team-token-one-deployment";

const daemons: DaemonProcess[] = [];
const executors: PlatformExecutor[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const executor of executors.splice(0)) await executor.close();
  for (const daemon of daemons.splice(0)) {
    await daemon.stop();
    removeDataDir(daemon.dataDir);
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function daemonWithHttp(
  args: readonly string[] = [],
): Promise<{ daemon: DaemonProcess; http: string }> {
  const daemon = await startDaemon({ args: ["--http", "127.0.0.1:0", ...args] });
  daemons.push(daemon);
  const listening = daemon.logs.find((entry) => entry.msg === "listening");
  const http = listening?.http;
  if (typeof http !== "string")
    throw new Error(`the listening line names no http address: ${JSON.stringify(listening)}`);
  return { daemon, http };
}

function useDaemon(daemon: DaemonProcess, accessToken?: string): PlatformExecutor {
  const executor = new PlatformExecutor({
    address: daemon.address,
    accessToken,
    deploymentId: undefined,
    tlsCaFile: undefined,
  });
  executors.push(executor);
  setExecutor(executor);
  return executor;
}

async function scrape(http: string, token?: string): Promise<Sample[]> {
  const response = await fetch(`http://${http}/metrics`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}: ${body}`);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(body).samples;
}

/** Waits until every instance has ended, whatever its status. */
async function settled(instances: readonly TaskInstanceState<unknown>[]): Promise<void> {
  await withDeadline(
    Promise.all(instances.map((instance) => until(instance, (i) => i.isDone(), "its end"))),
    "every instance to end",
  );
}

describe("GET /metrics", () => {
  it("counts a known load by task and status, and its gauges go back to zero", async () => {
    // Pool mode: four warm workloads serve the whole load.
    const { daemon, http } = await daemonWithHttp(["--concurrency", "4", "--workload-mode", "pool"]);
    const executor = useDaemon(daemon);
    const before = await scrape(http);
    expect(sampleSum(before, "numerous_tasks_instances_ended_total")).toBe(0);

    const quick = [...Array.from({ length: 5 }, (_, i) => add(i, 1)), throwsError("one"), throwsError("two")];
    await settled(quick);
    expect(quick.map((instance) => instance.status).sort()).toEqual([
      ...Array(5).fill("completed"),
      "failed",
      "failed",
    ]);

    const waiting = waitForStop("stopped");
    await until(waiting, (instance) => instance.progress === 0.5, "the task to run");
    const whileRunning = await scrape(http);
    expect(sampleValue(whileRunning, "numerous_tasks_instances_running")).toBe(1);
    expect(sampleValue(whileRunning, "numerous_tasks_instances_pending")).toBe(0);
    // The executor watches its instances through one stream.
    expect(sampleValue(whileRunning, "numerous_tasks_watchers")).toBeGreaterThanOrEqual(1);
    await stopTaskInstance(waiting.id);
    await settled([waiting]);
    expect(waiting.status).toBe("cancelled");

    const after = await scrape(http);
    const ended = (task: string, status: string) =>
      sampleValue(after, "numerous_tasks_instances_ended_total", { task, status });
    expect(ended("add", "completed")).toBe(5);
    expect(ended("throwsError", "failed")).toBe(2);
    expect(ended("waitForStop", "cancelled")).toBe(1);
    expect(sampleSum(after, "numerous_tasks_instances_ended_total")).toBe(8);
    expect(sampleValue(after, "numerous_tasks_instances_running")).toBe(0);
    expect(sampleValue(after, "numerous_tasks_instances_pending")).toBe(0);
    // One attempt each: each ran once and waited once.
    for (const [task, count] of [
      ["add", 5],
      ["throwsError", 2],
      ["waitForStop", 1],
    ] as const) {
      expect(sampleValue(after, "numerous_tasks_run_duration_seconds_count", { task })).toBe(count);
      expect(sampleValue(after, "numerous_tasks_run_duration_seconds_bucket", { task, le: "+Inf" })).toBe(
        count,
      );
      expect(sampleValue(after, "numerous_tasks_queue_wait_duration_seconds_count", { task })).toBe(count);
    }
    // The pool's four workloads, and none died.
    expect(sampleValue(after, "numerous_tasks_workload_starts_total")).toBe(4);
    expect(sampleSum(after, "numerous_tasks_workload_crashes_total")).toBe(0);
    expect(sampleSum(after, "numerous_tasks_retries_total")).toBe(0);
    expect(sampleValue(after, "numerous_tasks_store_commit_duration_seconds_count")).toBeGreaterThan(0);
    expect(sampleValue(after, "numerous_tasks_store_commit_failures_total")).toBe(0);
    // No label names an instance.
    for (const sample of after) {
      for (const value of Object.values(sample.labels)) {
        for (const instance of [...quick, waiting]) expect(value).not.toContain(instance.id);
      }
    }

    await executor.close();
    let watchers = -1;
    await withDeadline(
      (async () => {
        for (;;) {
          watchers = sampleValue(await scrape(http), "numerous_tasks_watchers") ?? -1;
          if (watchers === 0) return;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })(),
      "the watchers gauge to go back to 0 after the executor closed",
      undefined,
      () => `watchers ${watchers}`,
    );
  });

  it("counts a retried attempt, and a workload that died", async () => {
    // Process mode: a workload per attempt, each started for it (warm runners, started ahead of
    // demand, would count before anything ran).
    const { daemon, http } = await daemonWithHttp(["--concurrency", "2", "--warm-workloads", "0"]);
    useDaemon(daemon);
    const dir = mkdtempSync(join(tmpdir(), "nt-metrics-"));
    dirs.push(dir);
    const retried = failsOnce(join(dir, "marker"));
    expect(await waitForCompletion(retried)).toBe("second attempt");
    const samples = await scrape(http);
    expect(sampleValue(samples, "numerous_tasks_retries_total", { task: "failsOnce" })).toBe(1);
    expect(sampleValue(samples, "numerous_tasks_run_duration_seconds_count", { task: "failsOnce" })).toBe(2);
    expect(
      sampleValue(samples, "numerous_tasks_queue_wait_duration_seconds_count", { task: "failsOnce" }),
    ).toBe(2);
    expect(
      sampleValue(samples, "numerous_tasks_instances_ended_total", {
        task: "failsOnce",
        status: "completed",
      }),
    ).toBe(1);
    expect(sampleSum(samples, "numerous_tasks_instances_ended_total")).toBe(1);
    expect(sampleSum(samples, "numerous_tasks_workload_crashes_total")).toBe(0);
    expect(sampleValue(samples, "numerous_tasks_workload_starts_total")).toBe(2);

    const crashed = exitsWithCode(3);
    await settled([crashed]);
    expect(crashed.status).toBe("failed");
    const afterCrash = await scrape(http);
    expect(sampleValue(afterCrash, "numerous_tasks_workload_starts_total")).toBe(3);
    expect(sampleValue(afterCrash, "numerous_tasks_workload_crashes_total", { task: "exitsWithCode" })).toBe(
      1,
    );
    expect(
      sampleValue(afterCrash, "numerous_tasks_instances_ended_total", {
        task: "exitsWithCode",
        status: "failed",
      }),
    ).toBe(1);
  });
});

describe("GET /metrics in a cluster", () => {
  let postgres: TestPostgres | undefined;
  let cluster: Cluster | undefined;
  beforeAll(async () => {
    postgres = await startPostgres();
  });
  afterAll(async () => {
    await cluster?.close();
    await postgres?.stop();
  });

  it("each daemon counts what it ran, and its lease renewals", async () => {
    cluster = await startCluster(
      postgres as TestPostgres,
      [2, 2],
      ["--http", "127.0.0.1:0", "--lease-ms", "900", "--workload-mode", "pool"],
    );
    const https = cluster.daemons.map((daemon) => {
      const http = daemon.logs.find((entry) => entry.msg === "listening")?.http;
      if (typeof http !== "string")
        throw new Error("a cluster daemon's listening line names no http address");
      return http;
    });
    setExecutor(cluster.client(0));
    const instances = Array.from({ length: 6 }, (_, i) => add(i, i));
    await settled(instances);
    expect(instances.map((instance) => instance.status)).toEqual(Array(6).fill("completed"));
    const scrapes = await Promise.all(https.map((http) => scrape(http)));
    const completed = scrapes.map(
      (samples) =>
        sampleValue(samples, "numerous_tasks_instances_ended_total", { task: "add", status: "completed" }) ??
        0,
    );
    expect(completed.reduce((sum, n) => sum + n, 0)).toBe(6);
    for (const http of https) {
      let renewed = 0;
      await withDeadline(
        (async () => {
          for (;;) {
            renewed =
              sampleValue(await scrape(http), "numerous_tasks_lease_renewals_total", {
                outcome: "renewed",
              }) ?? 0;
            if (renewed > 0) return;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        })(),
        `a lease renewal counted by the daemon at ${http}`,
      );
    }
  });
});

describe("the HTTP port's access rules", () => {
  it("with tokens, /metrics needs a token granted every deployment, sent in the Authorization header", async () => {
    const { http } = await daemonWithHttp(["--tokens", `${OPERATOR_TOKEN} *;${TEAM_TOKEN} team`]);
    const get = (headers: Record<string, string>, query = "") =>
      fetch(`http://${http}/metrics${query}`, { headers });

    const missing = await get({});
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(await missing.text()).toContain("Authorization: Bearer");
    const wrong = await get({ authorization: "Bearer not-a-token-of-this-daemon" });
    expect(wrong.status).toBe(401);
    expect(await wrong.text()).not.toContain("numerous_tasks_");
    const oneDeployment = await get({ authorization: `Bearer ${TEAM_TOKEN}` });
    expect(oneDeployment.status).toBe(403);
    expect(await oneDeployment.text()).toContain("every deployment (*)");
    const inUrl = await get({}, `?access_token=${OPERATOR_TOKEN}`);
    expect(inUrl.status).toBe(400);
    expect(await inUrl.text()).toContain("never in the URL");

    const operator = await scrape(http, OPERATOR_TOKEN);
    expect(sampleValue(operator, "numerous_tasks_instances_running")).toBe(0);
  });

  it("answers unknown paths 404 and other methods 405", async () => {
    const { http } = await daemonWithHttp();
    expect((await fetch(`http://${http}/nothing-here`)).status).toBe(404);
    const post = await fetch(`http://${http}/metrics`, { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET");
  });

  it("serve refuses HTTP beyond loopback without a token, as it does gRPC", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "nt-refused-"));
    dirs.push(dataDir);
    const result = await runCli(["serve", "--http", "0.0.0.0:0", "--data-dir", dataDir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("refusing to serve HTTP on 0.0.0.0:0 without a token");
    expect(result.stderr).toContain("--insecure");
    const fromEnv = await runCli(["serve", "--data-dir", dataDir], {
      env: { NUMEROUS_EXECUTOR_HTTP: "0.0.0.0:0" },
    });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toContain("refusing to serve HTTP on 0.0.0.0:0");
  });

  it("is off by default", async () => {
    const daemon = await startDaemon();
    daemons.push(daemon);
    expect(daemon.logs.find((entry) => entry.msg === "listening")).not.toHaveProperty("http");
  });
});

describe("DaemonMetrics", () => {
  it("keeps the task label bounded: names past the cap are counted as 'other'", async () => {
    const metrics = new DaemonMetrics({ maxTaskNames: 500, processMetrics: false });
    const now = Date.now();
    for (let i = 0; i < 10_000; i++) {
      const row = { taskName: `task-${i}`, status: "running", createdAt: now, readyAt: 0, startedAt: now };
      metrics.statusChanged(row as unknown as StoredInstance, "completed", now + 5);
    }
    const { samples } = parsePrometheusText((await metrics.scrape()).body);
    const ended = samples.filter((sample) => sample.name === "numerous_tasks_instances_ended_total");
    const tasks = new Set(ended.map((sample) => sample.labels.task));
    expect(tasks.size).toBe(501);
    expect(sampleSum(samples, "numerous_tasks_instances_ended_total")).toBe(10_000);
    expect(
      sampleValue(samples, "numerous_tasks_instances_ended_total", {
        task: OTHER_TASKS,
        status: "completed",
      }),
    ).toBe(9_500);
    const runs = samples.filter((sample) => sample.name === "numerous_tasks_run_duration_seconds_count");
    expect(runs).toHaveLength(501);
  });
});
