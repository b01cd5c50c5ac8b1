/**
 * The chaos harness: starts a real daemon, drives a mixed load through the public SDK, injects
 * faults at random (seeded), then checks the invariants of `RELIABILITY.md` and reports.
 *
 *   const result = await runChaos({ seconds: 30, seed: 7 });
 *   result.violations.length === 0
 *
 * The seed fixes the schedule: which task is called with which arguments, and when each fault
 * strikes. Which instance a fault lands on depends on what is running at that moment, so a
 * replay meets the same storm, not always the same victims.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import {
  type Executor,
  type InstanceSnapshot,
  PlatformExecutor,
  listTaskInstances,
  setExecutor,
  stopTaskInstance,
} from "numerous-tasks";
import {
  type Instance,
  ListInstancesRequest,
  type ListInstancesResponse,
  Status,
  TaskServiceClient,
} from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { CHAOS_KINDS, type ChaosKind } from "./answers.js";
import { type InvariantResult, checkInvariants } from "./check-invariants.js";
import { createDaemonSupervisor, type DaemonCrash } from "./daemon-supervisor.js";
import { KIND_WEIGHTS, argsFor, callTask } from "./load-mix.js";
import { ObserverLog, type Seen } from "./observer-log.js";
import { openFds, rssBytes, workloadProcesses } from "./procfs.js";
import { createPrng, type Prng } from "./prng.js";
import { RawWatch } from "./raw-watch.js";
import { formatReport } from "./format-report.js";
import { LoadGate } from "./load-gate.js";
import { createGenerationMeter } from "./generation-meter.js";
import { createRogueClient, type RogueReport } from "./rogue-client.js";
import { createTcpProxy } from "./tcp-proxy.js";
import {
  type FinalRow,
  type Heartbeat,
  type MemoryFigures,
  type Observer,
  type StopRecord,
  type Tracked,
  type Violation,
  type WorkloadSighting,
  finalFromWire,
  seenFromWire,
} from "./run-record.js";
import { type Percentiles, bump, percentiles } from "./stats.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/executor-platform/cli/cli.js");

/** Options of {@link runChaos}. */
export interface ChaosOptions {
  /** How long the load and the faults last. The run takes longer: warm-up, settling, checks. */
  readonly seconds: number;
  readonly seed: number;
  /** Progress lines; default none. */
  readonly log?: (line: string) => void;
  /** The daemon's --workload-mode. Default `process`. */
  readonly mode?: "process" | "pool";
  /** The daemon's --concurrency. Default 4. */
  readonly concurrency?: number;
  /** The daemon's --stop-grace-ms. Default 2000. */
  readonly stopGraceMs?: number;
  /** The daemon's --reconnect-window-ms. Default 5000. */
  readonly reconnectWindowMs?: number;
  /** The daemon's --connection-idle-ms: how soon it closes a connection a client left. Default 10 s. */
  readonly connectionIdleMs?: number;
  /** Where the daemon listens: a TCP port fixed for the run (default), or a unix socket. */
  readonly transport?: "tcp" | "unix";
  /** How long after the faults end every instance has to be final. Default 60 s. */
  readonly settleBoundMs?: number;
  /** Keep the run directory (data, daemon logs, heartbeats) even when nothing was violated. */
  readonly keep?: boolean;
}

/** What a run found. */
export interface ChaosResult {
  readonly seed: number;
  readonly seconds: number;
  readonly settings: Readonly<Record<string, string | number>>;
  /** Kept when there were violations or `keep` was set. */
  readonly runDir: string | undefined;
  readonly submitted: { readonly total: number; readonly byKind: Readonly<Record<string, number>> };
  readonly faults: Readonly<Record<string, number>>;
  readonly outcomes: Readonly<Record<string, number>>;
  readonly outcomesByKind: Readonly<Record<string, Readonly<Record<string, number>>>>;
  readonly invariants: readonly InvariantResult[];
  readonly violations: readonly Violation[];
  readonly latency: {
    /** Short tasks, call to the caller's handle showing `completed`, during the faults. */
    readonly shortCompletedMs: Percentiles;
    /** Stops of running instances, acknowledgement to the caller's handle showing the end. */
    readonly stopToEndMs: Percentiles;
  };
  readonly memory: MemoryFigures;
  /** From the end of the faults until no instance was pending or running. */
  readonly settleMs: number;
  /** Per kind of observer: instances watched, and the breaks those watches lived through. */
  readonly watchers: Readonly<Record<string, { readonly watches: number; readonly breaks: number }>>;
  readonly findings: readonly string[];
  readonly rogue: RogueReport;
  readonly durationMs: number;
  /** The report, as printed by `npm run chaos`. */
  readonly table: string;
}

const WATCHER_EXECUTORS = 3;
const SLOW_WATCHERS = 2;
const CROWD_LISTENERS = 12;
const CROWD_STREAMS = 20;
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/**
 * How much more a daemon generation may keep at rest at its end than at its start: V8 keeps
 * part of the heap it grew, and the mix moves messages of up to 2 MiB. The report says, per
 * generation, how large a leak per instance would have crossed it.
 */
const RSS_HEADROOM_BYTES = 96 * 2 ** 20;
/** How many more descriptors of its own a daemon may hold at rest at its end than at its start. */
const FDS_HEADROOM = 4;

type FaultKind = "workload-kill" | "daemon-restart" | "proxy-cut" | "stop";
interface FaultEvent {
  readonly at: number;
  readonly kind: FaultKind;
  readonly when?: StopRecord["when"];
}

/** Runs the harness once. Never throws for what it finds: violations are in the result. */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const started = Date.now();
  const log = options.log ?? (() => {});
  const mode = options.mode ?? "process";
  const concurrency = options.concurrency ?? 4;
  const stopGraceMs = options.stopGraceMs ?? 2_000;
  const reconnectWindowMs = options.reconnectWindowMs ?? 5_000;
  const connectionIdleMs = options.connectionIdleMs ?? 10_000;
  const settleBoundMs = options.settleBoundMs ?? 60_000;
  const loadMs = Math.round(options.seconds * 1000);
  const prng = createPrng(options.seed);

  const runDir = mkdtempSync(join(tmpdir(), "nt-chaos-"));
  const dataDir = join(runDir, "data");
  const heartbeatDir = join(runDir, "heartbeats");
  mkdirSync(dataDir);
  mkdirSync(heartbeatDir);
  const listen =
    options.transport === "unix" ? `unix:${join(runDir, "d.sock")}` : `127.0.0.1:${await freePort()}`;
  const daemonAddress = listen;
  // Workloads reach the daemon at its address, or at a socket of its own in the data directory.
  const ours = (address: string) => address === daemonAddress || address.startsWith(`unix:${dataDir}/`);

  const crashes: string[] = [];
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    CHAOS_HEARTBEAT_DIR: heartbeatDir,
  };
  // The daemon passes its environment on to workloads; the harness's own flags stay out of it.
  delete env.NODE_OPTIONS;
  const supervisor = createDaemonSupervisor({
    cli: CLI,
    root: ROOT,
    listen,
    dataDir,
    logDir: runDir,
    args: [
      "--workload-mode",
      mode,
      "--concurrency",
      String(concurrency),
      "--stop-grace-ms",
      String(stopGraceMs),
      "--reconnect-window-ms",
      String(reconnectWindowMs),
      "--connection-idle-ms",
      String(connectionIdleMs),
      "--max-message-bytes",
      String(MAX_MESSAGE_BYTES),
      "--shutdown-grace-ms",
      "5000",
    ],
    env,
    onCrash: (crash: DaemonCrash) => {
      const text = `daemon generation ${crash.generation} (pid ${crash.pid}) exited on its own at ${new Date(crash.at).toISOString()} with ${crash.signal ?? `code ${crash.code}`}; stderr: ${crash.stderr.trim().slice(-600) || "(empty)"}; log ${supervisor.logFile(crash.generation)}`;
      crashes.push(text);
      log(`!! ${text}`);
    },
  });
  log(
    `chaos: seed ${options.seed}, ${options.seconds} s of load, ${mode} mode, concurrency ${concurrency}, grace ${stopGraceMs} ms; run dir ${runDir}`,
  );
  await supervisor.start();

  const tracked = new Map<string, Tracked>();
  const observers: Observer[] = [];
  const addObserver = (
    kind: Observer["kind"],
    log: ObserverLog,
    wide: boolean,
    breaks: (id: string) => number = () => 0,
    notes?: () => string,
  ) => {
    observers.push({ kind, log, wide, breaks, ...(notes ? { notes } : {}) });
    return log;
  };
  const callerLog = addObserver("caller", new ObserverLog("the caller's executor"), false);
  const faults: Record<string, number> = {};
  const poolKills: number[] = [];
  const rawWatches: RawWatch[] = [];
  let outstanding = 0;
  let phase: Tracked["phase"] = "warm-up";
  let freezing = true;
  let caller: Executor;

  const executorFor = (address: string) =>
    new PlatformExecutor({ address, accessToken: undefined, deploymentId: undefined, tlsCaFile: undefined });

  const submit = (kind: ChaosKind, p: Prng, watch: boolean, fixed?: readonly unknown[]): Tracked => {
    const args = fixed ?? argsFor(kind, p);
    const submittedAt = Date.now();
    const handle = callTask(kind, args);
    const t: Tracked = {
      id: handle.id,
      kind,
      args,
      phase,
      submittedAt,
      handle,
      doneAt: undefined,
      stops: [],
      workloadKills: [],
      crowd: false,
    };
    tracked.set(t.id, t);
    outstanding++;
    const off = handle.onChange(() => {
      if (!handle.isDone() || t.doneAt !== undefined) return;
      t.doneAt = Date.now();
      outstanding--;
      off();
    });
    callerLog.expect(t.id);
    caller.watch(t.id, 0, (s) => callerLog.see(t.id, seenFromSnapshot(s), Date.now()));
    if (watch) watchMore(t, p);
    return t;
  };

  const stop = async (t: Tracked, when: StopRecord["when"]) => {
    const record: StopRecord = {
      when,
      sentAt: Date.now(),
      ackAt: undefined,
      refused: undefined,
      refusedCode: undefined,
      refusedAt: undefined,
    };
    t.stops.push(record);
    bump(faults, `stop (${when})`);
    try {
      await stopTaskInstance(t.id);
      record.ackAt = Date.now();
    } catch (error) {
      record.refusedAt = Date.now();
      record.refused = (error as Error).name;
      const code = (error as { code?: unknown }).code;
      record.refusedCode = typeof code === "string" ? code : undefined;
      bump(faults, `stop refused (${record.refused})`);
    }
  };

  // ---- warm-up and the baseline ----------------------------------------------------------
  const warm = executorFor(daemonAddress);
  caller = warm;
  const previousExecutor = setExecutor(warm);
  const warmPrng = prng.fork("warm-up");
  const warmups = (["short", "short", "long", "throws", "big", "chatty", "cpu"] as const).map((k) =>
    submit(k, warmPrng, false),
  );
  // The grace kill acts only on a task that ignores its stop while it runs, and on a busy
  // machine the load's random stops mostly land on pending instances: a probe makes sure, a
  // stubborn task that would run for a minute, stopped once its heartbeat shows it running.
  const probe = submit("stubborn", warmPrng, false, [warmPrng.int(0, 1_000_000), 60_000]);
  await waitFor(() => probe.doneAt !== undefined || existsSync(join(heartbeatDir, probe.id)), settleBoundMs);
  await stop(probe, "running");
  bump(faults, "grace probe: a stubborn task stopped once running");
  // Bounded: a call the daemon lost must fail the run's checks, not hang it.
  await waitFor(() => [...warmups, probe].every((t) => t.doneAt !== undefined), settleBoundMs);
  await warm.close();
  const direct = new TaskServiceClient(daemonAddress, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 256 * 1024 * 1024,
    "grpc.use_local_subchannel_pool": 1,
  });
  const findings: string[] = [];
  // Every daemon generation is measured at rest near its start and near its end, against
  // itself: a restart must not wipe out what a generation leaked.
  const meter = createGenerationMeter({
    daemon: () => ({ pid: supervisor.pid, generation: supervisor.generation }),
    busy: async () =>
      (await listAll(direct, [Status.STATUS_PENDING, Status.STATUS_RUNNING], findings)).map((i) => i.id),
    stop: (id) => {
      const t = tracked.get(id);
      if (t !== undefined) void stop(t, "quiet moment");
    },
    workloads: () => workloadCount(ours, mode, concurrency),
    restWithinMs: settleBoundMs,
    fdsHeadroom: FDS_HEADROOM,
    log,
  });
  await meter.measure("start", { rssWindowMs: 3_000, waitMs: connectionIdleMs + 2_000, stopAll: false });

  // ---- clients, watchers, the proxy ------------------------------------------------------
  const callerLine = 0;
  const watcherLines = Array.from({ length: WATCHER_EXECUTORS }, (_, i) => 1 + i);
  const crowdLine = 1 + WATCHER_EXECUTORS;
  const slowLines = Array.from({ length: SLOW_WATCHERS }, (_, i) => crowdLine + 1 + i);
  const proxy = await createTcpProxy(daemonAddress, (slowLines.at(-1) as number) + 1);
  const cuttable = [callerLine, ...watcherLines, crowdLine];

  const main = keptAwake(executorFor(proxy.addresses[callerLine] as string));
  caller = main;
  setExecutor(main);
  phase = "load";
  // The SDK resumes its watch by itself; what the harness knows is how often it had to: the
  // connections cut and the daemon restarts while it watched.
  const breaksOn = (line: number, log: () => ObserverLog) => (id: string) => {
    const state = log().state(id);
    if (state === undefined) return 0;
    const to = state.terminal?.at ?? Date.now();
    const restarts = supervisor.downtimes.filter((d) => d.from >= state.since && d.from <= to).length;
    return proxy.cutsOn(line, state.since, to) + restarts;
  };
  (observers[0] as Observer).breaks = breaksOn(callerLine, () => callerLog);
  const watchers = watcherLines.map((line, i) => {
    const log: ObserverLog = new ObserverLog(`watcher executor #${i}`);
    addObserver(
      "watcher",
      log,
      false,
      breaksOn(line, () => log),
    );
    return { executor: keptAwake(executorFor(proxy.addresses[line] as string)), log, line };
  });
  const crowdStreams: RawWatch[] = [];
  const watchMore = (t: Tracked, p: Prng) => {
    if (p.chance(0.3)) {
      for (const w of watchers) {
        if (!p.chance(0.6)) continue;
        w.log.expect(t.id);
        w.executor.watch(t.id, 0, (s) => w.log.see(t.id, seenFromSnapshot(s), Date.now()));
      }
    }
    if (t.kind !== "long" || !p.chance(0.15)) return;
    t.crowd = true;
    bump(faults, "crowd: many watchers on one instance");
    for (let j = 0; j < CROWD_LISTENERS; j++) {
      const w = watchers[j % watchers.length] as (typeof watchers)[number];
      const crowdLog: ObserverLog = new ObserverLog(`crowd listener ${j} (executor #${j % watchers.length})`);
      addObserver(
        "crowd",
        crowdLog,
        false,
        breaksOn(w.line, () => crowdLog),
      );
      crowdLog.expect(t.id);
      w.executor.watch(t.id, 0, (s) => crowdLog.see(t.id, seenFromSnapshot(s), Date.now()));
    }
    for (let j = 0; j < CROWD_STREAMS; j++) {
      let watch: RawWatch | undefined;
      const crowdLog = addObserver(
        "crowd",
        new ObserverLog(`crowd stream ${j}`),
        false,
        () => watch?.resumes ?? 0,
        () =>
          `${watch?.messages ?? 0} message(s) received, last breaks: ${watch?.breaks.join(" / ") || "none"}`,
      );
      crowdLog.expect(t.id);
      watch = new RawWatch({
        address: proxy.addresses[crowdLine] as string,
        ids: [t.id],
        onChanges: (instances, at) => {
          for (const instance of instances) {
            crowdLog.see(instance.id, seenFromWire(instance), at);
            if (instance.status >= Status.STATUS_COMPLETED && instance.status <= Status.STATUS_CANCELLED)
              watch?.close();
          }
        },
      });
      crowdStreams.push(watch);
    }
  };

  const wideWatch = (kind: "slow" | "auditor", name: string, address: string, line?: number) => {
    let watch: RawWatch | undefined;
    const wideLog = addObserver(
      kind,
      new ObserverLog(name),
      true,
      () => watch?.resumes ?? 0,
      () =>
        `${watch?.messages ?? 0} message(s) received, resume point ${watch?.sequence}, last breaks: ${watch?.breaks.join(" / ") || "none"}`,
    );
    watch = new RawWatch({
      address,
      ownConnection: true,
      onChanges: (instances, at) => {
        for (const instance of instances) wideLog.see(instance.id, seenFromWire(instance), at);
      },
      onOpen: () => {
        if (line !== undefined && freezing) proxy.freeze(line);
      },
      onBreak: () => {
        if (line !== undefined) proxy.thaw(line);
      },
    });
    rawWatches.push(watch);
  };
  wideWatch("auditor", "the auditor (a deployment-wide watch that always reads)", daemonAddress);
  for (const [i, line] of slowLines.entries()) {
    wideWatch(
      "slow",
      `slow watcher #${i} (does not read its stream until the end)`,
      proxy.addresses[line] as string,
      line,
    );
  }

  const rogue = createRogueClient({
    address: daemonAddress,
    prng: prng.fork("rogue"),
    realIds: () => [...tracked.keys()],
    appRoot: ROOT,
    maxMessageBytes: MAX_MESSAGE_BYTES,
    framesSocket: join(dataDir, "workload-frames.sock"),
  });

  // ---- load and faults -------------------------------------------------------------------
  const loadStart = Date.now();
  const gate = new LoadGate(loadStart);
  const cap = concurrency * 3;
  const workloadsSeen = new Map<string, WorkloadSighting[]>();
  const sampler = setInterval(() => {
    const now = Date.now();
    for (const w of workloadProcesses(ours)) {
      if (w.instanceId === undefined) continue;
      const list = workloadsSeen.get(w.instanceId) ?? [];
      const known = list.find((s) => s.pid === w.pid);
      if (known) known.lastSeen = now;
      else list.push({ pid: w.pid, instanceId: w.instanceId, firstSeen: now, lastSeen: now });
      workloadsSeen.set(w.instanceId, list);
    }
    const pid = supervisor.pid;
    if (pid === undefined) return;
    const g = meter.of(pid);
    g.rssPeakBytes = Math.max(g.rssPeakBytes, rssBytes(pid) ?? 0);
    g.fdsPeak = Math.max(g.fdsPeak, openFds(pid) ?? 0);
  }, 500);
  const reporter = setInterval(() => {
    const ended = [...tracked.values()].filter((t) => t.doneAt !== undefined).length;
    log(
      `chaos: t=${Math.round(gate.elapsed() / 1000)}s submitted ${tracked.size}, ended ${ended}, ` +
        `faults ${Object.entries(faults)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ")}; daemon RSS ${mib(rssBytes(supervisor.pid ?? 0) ?? 0)} MiB`,
    );
  }, 5_000);

  // The n-th call of a seed is always the same call; only when it happens depends on timing.
  const loadPrng = prng.fork("load");
  const pacing = prng.fork("pacing");
  const beforeStart = prng.fork("before-start");
  const loadLoop = async () => {
    while (gate.elapsed() < loadMs) {
      await gate.pass();
      if (outstanding < cap) submit(loadPrng.weighted(KIND_WEIGHTS), loadPrng, true);
      await sleep(pacing.exponential(40));
    }
  };

  const schedule = faultSchedule(prng.fork("faults"), loadMs);
  const targets = prng.fork("targets");
  let restarting: Promise<void> | undefined;
  let rogueAction: Promise<void> = Promise.resolve();
  // A quiet moment: load, faults and rogue pause, every unfinished instance is stopped, and
  // the daemon is measured once at rest.
  const lull = async (which: "start" | "end") => {
    gate.close();
    bump(faults, "quiet moments (daemon measured at rest)");
    await rogueAction;
    await meter.measure(which, { rssWindowMs: 3_000, waitMs: connectionIdleMs + 2_000, stopAll: true });
    gate.open();
  };
  const restartDaemon = async (downMs: number, loadedMs: number) => {
    await lull("end");
    // The load picks up again first, so the kill lands on workloads starting and running.
    await sleep(loadedMs);
    bump(faults, "daemon SIGKILL + restart");
    const unfinished = [...tracked.values()].filter((t) => t.doneAt === undefined);
    await supervisor.kill9();
    await sleep(downMs);
    await supervisor.start();
    // The new daemon's warm-up, under load: what the kill left pending runs, running
    // workloads reattach or are given up; only then is it measured.
    await waitFor(() => unfinished.every((t) => t.doneAt !== undefined), reconnectWindowMs + 2_000);
    await lull("start");
  };
  const faultLoop = async () => {
    for (const event of schedule) {
      await gate.until(event.at);
      if (gate.elapsed() >= loadMs) break;
      switch (event.kind) {
        case "workload-kill": {
          const procs = workloadProcesses(ours);
          if (procs.length === 0) break;
          const victim = targets.pick(procs);
          try {
            process.kill(victim.pid, "SIGKILL");
          } catch {
            break;
          }
          bump(faults, "workload SIGKILL");
          const at = Date.now();
          if (victim.instanceId !== undefined) tracked.get(victim.instanceId)?.workloadKills.push(at);
          else poolKills.push(at);
          break;
        }
        case "daemon-restart":
          if (restarting === undefined) {
            restarting = restartDaemon(targets.int(0, 1_500), targets.int(1_500, 3_000)).finally(() => {
              restarting = undefined;
            });
          }
          break;
        case "proxy-cut": {
          const lines = cuttable.filter(() => targets.chance(0.6));
          bump(faults, "connections cut by the proxy", proxy.cut(lines.length > 0 ? lines : cuttable));
          bump(faults, "proxy cut events");
          break;
        }
        case "stop": {
          const when = event.when ?? "running";
          if (when === "before-start") {
            const t = submit(
              beforeStart.pick(["short", "long", "stubborn", "cpu"] as const),
              beforeStart,
              false,
            );
            void stop(t, when);
            break;
          }
          const candidates = [...tracked.values()].filter(
            (t) =>
              t.phase === "load" && (when === "running" ? t.doneAt === undefined : t.doneAt !== undefined),
          );
          if (candidates.length > 0) void stop(targets.pick(candidates), when);
          break;
        }
      }
    }
  };
  const roguePrng = prng.fork("rogue pacing");
  const rogueLoop = async () => {
    while (gate.elapsed() < loadMs) {
      await gate.pass();
      rogueAction = rogue.act();
      await rogueAction;
      await sleep(roguePrng.exponential(250));
    }
  };
  await Promise.all([loadLoop(), faultLoop(), rogueLoop()]);
  while (restarting !== undefined) await restarting;
  const faultsEnded = Date.now();
  clearInterval(reporter);
  log(
    `chaos: faults over after ${Math.round((faultsEnded - loadStart) / 1000)} s; ${tracked.size} instances; settling`,
  );

  // ---- settle ------------------------------------------------------------------------------
  let unfinished: FinalRow[] = [];
  let listed = true;
  for (;;) {
    try {
      unfinished = (await listAll(direct, [Status.STATUS_PENDING, Status.STATUS_RUNNING], findings)).map(
        finalFromWire,
      );
    } catch (error) {
      // The daemon is gone: what it did not finish shows as missing from the final listing.
      findings.push(`settling: the daemon could not be listed: ${(error as Error).message}`);
      listed = false;
      break;
    }
    if (unfinished.length === 0 || Date.now() - faultsEnded > settleBoundMs) break;
    await sleep(250);
  }
  const settleMs = Date.now() - faultsEnded;
  log(
    `chaos: ${!listed ? "the daemon could not be listed" : unfinished.length === 0 ? `every instance final ${settleMs} ms after the faults` : `${unfinished.length} instance(s) still unfinished after ${settleMs} ms`}`,
  );
  freezing = false;
  for (const line of slowLines) proxy.thaw(line);
  let finalList: Instance[] = [];
  try {
    finalList = await listAll(direct, [], findings);
  } catch (error) {
    findings.push(`the daemon's final listing failed, so it lists nothing: ${(error as Error).message}`);
  }
  const final = new Map<string, FinalRow>();
  const duplicates: string[] = [];
  for (const instance of finalList) {
    if (final.has(instance.id)) duplicates.push(instance.id);
    final.set(instance.id, finalFromWire(instance));
  }
  // Watchers get a little time to catch up with the end; the checker says who did not.
  await waitFor(() => {
    for (const t of tracked.values()) if (!t.handle.isDone() && final.has(t.id)) return false;
    for (const o of observers) {
      const ids = o.wide ? final.keys() : o.log.ids();
      for (const id of ids) {
        const row = final.get(id);
        if (row !== undefined && isFinal(row.status) && o.log.state(id)?.terminal === undefined) return false;
      }
    }
    return true;
  }, 20_000);

  await sdkListingCheck(findings);

  // ---- after the load: leaks ---------------------------------------------------------------
  clearInterval(sampler);
  rogue.close();
  for (const watch of [...rawWatches, ...crowdStreams]) watch.close();
  await main.close();
  for (const w of watchers) await w.executor.close();
  await proxy.close();
  if (previousExecutor !== undefined) setExecutor(previousExecutor);
  // Connections the clients left are closed once idle for the daemon's --connection-idle-ms.
  await meter.measure("end", { rssWindowMs: 8_000, waitMs: connectionIdleMs + 10_000, stopAll: false });
  direct.close();
  for (const g of meter.generations) {
    const from = g.start?.at ?? Number.POSITIVE_INFINITY;
    const to = g.end?.at ?? Number.NEGATIVE_INFINITY;
    g.instances = [...final.values()].filter(
      (row) => row.finishedAt !== undefined && row.finishedAt > from && row.finishedAt <= to,
    ).length;
  }
  const memory: MemoryFigures = {
    generations: meter.generations,
    rssHeadroomBytes: RSS_HEADROOM_BYTES,
    fdsHeadroom: FDS_HEADROOM,
  };
  const shutdownExitCode = await supervisor.stop(15_000);
  // Workloads may outlive a daemon on purpose (to reattach to the next), and give up after
  // 60 s without one; every one must be gone by then.
  await waitFor(() => workloadProcesses(ours).length === 0, 5_000);
  const lingering = workloadProcesses(ours);
  if (lingering.length > 0) {
    findings.push(
      `${lingering.length} workload process(es) were still alive 5 s after the daemon exited on SIGTERM with nothing running: ` +
        lingering
          .map(
            (p) => `pid ${p.pid} (parent ${p.ppid}${p.instanceId ? `, instance ${p.instanceId}` : ", pool"})`,
          )
          .join(", "),
    );
    await waitFor(() => workloadProcesses(ours).length === 0, 65_000);
  }
  const leftoverWorkloads = workloadProcesses(ours).map((p) => p.pid);
  for (const pid of leftoverWorkloads) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }

  // ---- check and report --------------------------------------------------------------------
  const heartbeats = readHeartbeats(heartbeatDir);
  const daemonCrashes = [
    ...crashes,
    ...supervisor.failedStarts.map(
      (f) =>
        `daemon generation ${f.generation} failed to start at ${new Date(f.at).toISOString()}: ${f.stderr.trim().slice(-600)}`,
    ),
  ];
  const checked = checkInvariants({
    mode,
    stopGraceMs,
    reconnectWindowMs,
    settleBoundMs,
    tracked,
    final,
    duplicates,
    unfinished,
    heartbeats,
    observers,
    downtimes: supervisor.downtimes,
    poolKills,
    daemonCrashes,
    shutdownExitCode,
    memory,
    leftoverWorkloads,
    rogueBreaches: rogue.report.breaches,
    rogueLeaks: rogue.report.leaks,
    rogueAnswered: rogue.report.answered,
    workloadsSeen,
  });
  attachLogLines(checked.violations, runDir);
  findings.push(...checked.findings, ...observationFindings(observers, supervisor, runDir, tracked, final));

  const submittedByKind: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  const outcomesByKind: Record<string, Record<string, number>> = {};
  for (const kind of CHAOS_KINDS) outcomesByKind[kind] = {};
  for (const t of tracked.values()) {
    bump(submittedByKind, t.kind);
    const row = final.get(t.id);
    const status =
      row?.status ??
      (t.handle.error?.code === "EXECUTOR_UNAVAILABLE"
        ? "never reached the daemon"
        : `missing (${t.handle.status})`);
    bump(outcomes, status);
    bump(outcomesByKind[t.kind] as Record<string, number>, status);
  }
  const shortCompleted = [...tracked.values()]
    .filter(
      (t) =>
        t.phase === "load" && t.kind === "short" && t.handle.status === "completed" && t.doneAt !== undefined,
    )
    .map((t) => (t.doneAt as number) - t.submittedAt);
  const stopToEnd = [...tracked.values()].flatMap((t) => {
    const ackAt = t.stops.find((s) => s.ackAt !== undefined)?.ackAt;
    const startedAt = final.get(t.id)?.startedAt;
    // Only stops that reached a running instance: a pending one ends at once.
    if (
      ackAt === undefined ||
      startedAt === undefined ||
      startedAt > ackAt ||
      t.doneAt === undefined ||
      t.doneAt < ackAt
    )
      return [];
    return [t.doneAt - ackAt];
  });
  const watcherFigures: Record<string, { watches: number; breaks: number }> = {};
  for (const o of observers) {
    const entry = (watcherFigures[o.kind] ??= { watches: 0, breaks: 0 });
    entry.watches += o.wide ? final.size : o.log.size;
    // A deployment-wide stream breaks once for all its instances.
    if (o.wide) entry.breaks += o.breaks("");
    else for (const id of o.log.ids()) entry.breaks += o.breaks(id);
  }
  const violations = checked.violations;
  const keep = options.keep === true || violations.length > 0;
  if (!keep) rmSync(runDir, { recursive: true, force: true });

  const partial = {
    seed: options.seed,
    seconds: options.seconds,
    settings: {
      mode,
      concurrency,
      "stop grace (ms)": stopGraceMs,
      "reconnect window (ms)": reconnectWindowMs,
      "settle bound (ms)": settleBoundMs,
      transport: options.transport ?? "tcp",
      "daemon generations": supervisor.generation,
    },
    runDir: keep ? runDir : undefined,
    submitted: { total: tracked.size, byKind: submittedByKind },
    faults: { ...faults, ...rogueFaults(rogue.report) },
    outcomes,
    outcomesByKind,
    invariants: checked.invariants,
    violations,
    latency: { shortCompletedMs: percentiles(shortCompleted), stopToEndMs: percentiles(stopToEnd) },
    memory,
    settleMs,
    watchers: watcherFigures,
    findings,
    rogue: rogue.report,
    durationMs: Date.now() - started,
  };
  return { ...partial, table: formatReport(partial) };
}

function faultSchedule(prng: Prng, loadMs: number): FaultEvent[] {
  const events: FaultEvent[] = [];
  const poisson = (
    kind: FaultKind,
    meanMs: number,
    from: number,
    to: number,
    extra?: (p: Prng) => Partial<FaultEvent>,
  ) => {
    for (let at = from + prng.exponential(meanMs); at < to; at += prng.exponential(meanMs)) {
      events.push({ at: Math.round(at), kind, ...extra?.(prng) });
    }
  };
  poisson("workload-kill", 4_000, 0, loadMs);
  // Daemon kills stay in the first half, and 20 s before the end, so the last daemon, after
  // its restart and warm-up, still serves load between its two measurements.
  const restartsFrom = loadMs * 0.1;
  const restartsTo = Math.max(restartsFrom + 1_000, Math.min(loadMs * 0.5, loadMs - 20_000));
  poisson("daemon-restart", 15_000, restartsFrom, restartsTo);
  if (!events.some((e) => e.kind === "daemon-restart")) {
    events.push({
      at: Math.round(restartsFrom + prng.next() * (restartsTo - restartsFrom)),
      kind: "daemon-restart",
    });
  }
  poisson("proxy-cut", 3_000, 0, loadMs);
  poisson("stop", 500, 0, loadMs, (p) => ({
    when: p.weighted({ "before-start": 3, running: 5, "after-end": 2 }),
  }));
  return events.sort((a, b) => a.at - b.at);
}

/** Every instance of the default deployment with one of `statuses` (all when empty), page by page. */
async function listAll(
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
async function sdkListingCheck(findings: string[]): Promise<void> {
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

function observationFindings(
  observers: readonly Observer[],
  supervisor: ReturnType<typeof createDaemonSupervisor>,
  runDir: string,
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
  let reattached = 0;
  for (let g = 1; g <= supervisor.generation; g++) {
    try {
      reattached += readFileSync(join(runDir, `daemon-${g}.log`), "utf8")
        .split("\n")
        .filter((l) => l.includes('"workload reattached"')).length;
    } catch {
      // No log for a generation that never started.
    }
  }
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

function rogueFaults(report: RogueReport): Record<string, number> {
  const total = Object.values(report.actions).reduce((a, b) => a + b, 0);
  const out: Record<string, number> = {
    "rogue client actions": total,
    "rogue calls the daemon answered": report.answered,
    "rogue calls that never reached it": report.unanswered,
  };
  for (const [name, n] of Object.entries(report.actions)) out[`  rogue: ${name}`] = n;
  return out;
}

function attachLogLines(violations: Violation[], runDir: string): void {
  const ids = new Set(violations.flatMap((v) => v.ids));
  if (ids.size === 0) return;
  const byId = new Map<string, string[]>();
  for (const file of readdirSync(runDir)
    .filter((f) => /^daemon-\d+\.log$/.test(f))
    .sort()) {
    const lines = readFileSync(join(runDir, file), "utf8").split("\n");
    lines.forEach((line, index) => {
      for (const id of ids) {
        if (!line.includes(id)) continue;
        const list = byId.get(id) ?? [];
        if (list.length < 6) list.push(`${file}:${index + 1} ${line.slice(0, 400)}`);
        byId.set(id, list);
      }
    });
  }
  for (const v of violations) v.logLines = v.ids.flatMap((id) => byId.get(id) ?? []);
}

function readHeartbeats(dir: string): Map<string, Heartbeat> {
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
function workloadCount(
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
function keptAwake(executor: PlatformExecutor): PlatformExecutor {
  // When the SDK gives up on its stream it ends every watch, this one too: watch again.
  const keep = (): void => {
    executor.watch("chaos-keep-the-stream-open", 0, () => setImmediate(keep));
  };
  keep();
  return executor;
}

function seenFromSnapshot(s: InstanceSnapshot): Seen {
  return {
    revision: s.revision,
    status: s.status,
    result: s.result,
    errorName: s.error?.name,
    errorMessage: s.error?.message,
  };
}

function isFinal(status: string): boolean {
  return status === "completed" || status === "failed" || status === "cancelled";
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitFor(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}
