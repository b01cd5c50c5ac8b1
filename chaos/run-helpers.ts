/**
 * The small parts of a chaos run (`chaos/run-chaos.ts`) that do not depend on how many daemons
 * it runs: listing a deployment page by page, reading heartbeats and daemon logs, the rogue's
 * figures, and waiting.
 */
import { readFileSync, readdirSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { join, relative } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { type InstanceSnapshot, type PlatformExecutor, listTaskInstances } from "numerous-tasks";
import {
  type Instance,
  ListInstancesRequest,
  type ListInstancesResponse,
  type Status,
  type TaskServiceClient,
} from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import type { Seen } from "./observer-log.js";
import { workloadProcesses } from "./procfs.js";
import type { RogueReport } from "./rogue-client.js";
import type { FinalRow, Heartbeat, Observer, Tracked, Violation } from "./run-record.js";

/** Every instance of the default deployment with one of `statuses` (all when empty), page by page. */
export async function listAll(
  client: TaskServiceClient,
  statuses: Status[],
  findings: string[],
): Promise<Instance[]> {
  const all: Instance[] = [];
  let cursor = "";
  let limit = 1000;
  const unavailableUntil = Date.now() + 60_000;
  for (;;) {
    let page: ListInstancesResponse;
    try {
      page = await new Promise<ListInstancesResponse>((resolve, reject) =>
        client.listInstances(
          ListInstancesRequest.create({ statuses, limit, cursor }),
          new grpc.Metadata(),
          { deadline: Date.now() + 30_000 },
          (error, response) => (error ? reject(error) : resolve(response)),
        ),
      );
    } catch (error) {
      const e = error as grpc.ServiceError;
      if (e.code === grpc.status.RESOURCE_EXHAUSTED && limit > 1) {
        const note = `listing ${limit} instances per page failed with RESOURCE_EXHAUSTED (${e.details}); the harness lists in smaller pages`;
        if (!findings.includes(note)) findings.push(note);
        limit = Math.max(1, Math.floor(limit / 4));
        continue;
      }
      // Through a restart, not for good: a daemon that died must fail the run, not hang it.
      if (e.code === grpc.status.UNAVAILABLE && Date.now() < unavailableUntil) {
        await sleep(250);
        continue;
      }
      throw new Error(`listing instances: ${grpc.status[e.code] ?? e.code}: ${e.details}`);
    }
    all.push(...page.instances);
    if (page.nextCursor === "") return all;
    cursor = page.nextCursor;
  }
}

/** What a user gets from `listTaskInstances` over every instance of the run. */
export async function sdkListingCheck(findings: string[]): Promise<void> {
  try {
    let cursor: string | undefined;
    for (;;) {
      const page = await listTaskInstances({ limit: 1000, ...(cursor === undefined ? {} : { cursor }) });
      if (page.length < 1000) return;
      cursor = page.at(-1)?.id;
    }
  } catch (error) {
    findings.push(
      `listTaskInstances({ limit: 1000 }) over the run's instances failed: ${(error as Error).name}: ${(error as Error).message.slice(0, 300)}`,
    );
  }
}

/** What the observers, the daemon logs and the final listing say that breaks no promise. */
export function observationFindings(
  observers: readonly Observer[],
  logFiles: readonly string[],
  tracked: ReadonlyMap<string, Tracked>,
  final: ReadonlyMap<string, FinalRow>,
): string[] {
  const findings: string[] = [];
  const stale = new Map<string, number>();
  for (const o of observers) {
    for (const id of o.log.ids()) {
      const n = o.log.state(id)?.stale ?? 0;
      if (n > 0) stale.set(o.kind, (stale.get(o.kind) ?? 0) + n);
    }
  }
  for (const [kind, n] of stale) {
    findings.push(
      `${kind} watches received ${n} snapshot(s) older than one they had already seen (the SDK's handles drop these)`,
    );
  }
  const countLines = (text: string) =>
    logFiles.reduce((sum, file) => {
      try {
        return (
          sum +
          readFileSync(file, "utf8")
            .split("\n")
            .filter((l) => l.includes(text)).length
        );
      } catch {
        return sum; // No log for a generation that never started.
      }
    }, 0);
  const reattached = countLines('"workload reattached"');
  if (reattached > 0) findings.push(`${reattached} running workload(s) reattached to a restarted daemon`);
  const lost = [...final.values()].filter((r) => r.errorName === "WorkloadLostError").length;
  if (lost > 0)
    findings.push(
      `${lost} instance(s) ended WorkloadLostError: their workload did not reattach within the reconnect window`,
    );
  const unreached = [...tracked.values()].filter(
    (t) => !final.has(t.id) && t.handle.error?.code === "EXECUTOR_UNAVAILABLE",
  ).length;
  if (unreached > 0)
    findings.push(
      `${unreached} call(s) failed with ExecutorUnavailableError on the caller's side and never reached the daemon`,
    );
  return findings;
}

export function rogueFaults(report: RogueReport): Record<string, number> {
  const total = Object.values(report.actions).reduce((a, b) => a + b, 0);
  const out: Record<string, number> = {
    "rogue client actions": total,
    "rogue calls the daemon answered": report.answered,
    "rogue calls that never reached it": report.unanswered,
  };
  for (const [name, n] of Object.entries(report.actions)) out[`  rogue: ${name}`] = n;
  return out;
}

/** The daemon log files of a run: `daemon-<generation>.log`, in the run directory or one below. */
export function daemonLogFiles(runDir: string): string[] {
  const files: string[] = [];
  const isLog = (name: string) => /^daemon-\d+\.log$/.test(name);
  for (const entry of readdirSync(runDir, { withFileTypes: true })) {
    if (entry.isFile() && isLog(entry.name)) files.push(join(runDir, entry.name));
    else if (entry.isDirectory() && /^daemon-\d+$/.test(entry.name)) {
      for (const name of readdirSync(join(runDir, entry.name)))
        if (isLog(name)) files.push(join(runDir, entry.name, name));
    }
  }
  return files.sort();
}

/** Adds to each violation the daemon log lines that mention its ids (a few per id). */
export function attachLogLines(violations: Violation[], runDir: string): void {
  const ids = new Set(violations.flatMap((v) => v.ids));
  if (ids.size === 0) return;
  const byId = new Map<string, string[]>();
  for (const file of daemonLogFiles(runDir)) {
    const lines = readFileSync(file, "utf8").split("\n");
    lines.forEach((line, index) => {
      for (const id of ids) {
        if (!line.includes(id)) continue;
        const list = byId.get(id) ?? [];
        if (list.length < 6) list.push(`${relative(runDir, file)}:${index + 1} ${line.slice(0, 400)}`);
        byId.set(id, list);
      }
    });
  }
  for (const v of violations) v.logLines = v.ids.flatMap((id) => byId.get(id) ?? []);
}

export function readHeartbeats(dir: string): Map<string, Heartbeat> {
  const beats = new Map<string, Heartbeat>();
  for (const name of readdirSync(dir)) {
    // A heartbeat being written aside (see chaos/tasks.ts), or left so by a killed workload.
    if (name.endsWith(".tmp")) continue;
    try {
      const [startedAt, lastAt, pid] = readFileSync(join(dir, name), "utf8").trim().split(" ").map(Number);
      if (startedAt !== undefined && lastAt !== undefined)
        beats.set(name, { startedAt, lastAt, pid: pid ?? 0 });
    } catch {
      // Being written; the next read would see it, but the run is over.
    }
  }
  return beats;
}

/** Workload processes that are still doing something: in pool mode the warm ones do not count. */
export function workloadCount(
  ours: (address: string) => boolean,
  mode: "process" | "pool",
  concurrency: number,
): number {
  const n = workloadProcesses(ours).length;
  return mode === "pool" ? Math.max(0, n - concurrency) : n;
}

/**
 * An SDK executor closes its watch stream when nothing is left to watch, and a new stream gets
 * 3 s to deliver its first message before a broken connection fails every handle on it. Under
 * a steady load that never happened; the quiet moments empty every executor each time. A watch
 * of an id that never exists keeps the stream open, so the load meets the SDK as before.
 */
export function keptAwake(executor: PlatformExecutor): PlatformExecutor {
  // When the SDK gives up on its stream it ends every watch, this one too: watch again.
  const keep = (): void => {
    executor.watch("chaos-keep-the-stream-open", 0, () => setImmediate(keep));
  };
  keep();
  return executor;
}

export function seenFromSnapshot(s: InstanceSnapshot): Seen {
  return {
    revision: s.revision,
    status: s.status,
    result: s.result,
    errorName: s.error?.name,
    errorMessage: s.error?.message,
  };
}

export function isFinal(status: string): boolean {
  return status === "completed" || status === "failed" || status === "cancelled";
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function waitFor(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

export function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}
