/**
 * The chaos harness: starts a real daemon (or a cluster of daemons on one PostgreSQL), drives a
 * mixed load through the public SDK, injects faults at random (seeded), then checks the
 * invariants of `RELIABILITY.md` and reports.
 *
 *   const result = await runChaos({ seconds: 30, seed: 7 });
 *   const cluster = await runChaos({ seconds: 30, seed: 7, cluster: 3 });
 *   result.violations.length === 0
 *
 * The seed fixes the schedule: which task is called with which arguments, and when each fault
 * strikes. Which instance a fault lands on depends on what is running at that moment, so a
 * replay meets the same storm, not always the same victims.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { type Executor, PlatformExecutor, setExecutor } from "numerous-tasks";
import {
  Status,
  TaskServiceClient,
} from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import type { ChaosKind } from "./answers.js";
import { type InvariantResult, checkInvariants } from "./check-invariants.js";
import {
  type ClusterFaultKind,
  POSTGRES_DOWN_MS,
  clusterFindings,
  clusterSchedule,
  cutProbe,
  storeCutMs,
} from "./cluster-faults.js";
import { type ClusterRig, createClusterRig } from "./cluster-rig.js";
import { type Rig, createSingleRig } from "./daemon-rig.js";
import { formatReport } from "./format-report.js";
import { createGenerationMeter } from "./generation-meter.js";
import { LoadGate } from "./load-gate.js";
import { KIND_WEIGHTS, argsFor, callTask } from "./load-mix.js";
import { ObserverLog } from "./observer-log.js";
import { openFds, rssBytes, workloadProcesses } from "./procfs.js";
import { type Prng, createPrng } from "./prng.js";
import { type RogueReport, createRogueClient } from "./rogue-client.js";
import {
  attachLogLines,
  daemonLogFiles,
  freePort,
  isFinal,
  listAll,
  mib,
  observationFindings,
  readHeartbeats,
  rogueFaults,
  sdkListingCheck,
  seenFromSnapshot,
  sleep,
  waitFor,
  workloadCount,
} from "./run-helpers.js";
import {
  type MemoryFigures,
  type Observer,
  type Downtime,
  type StopRecord,
  type StoreOutage,
  type Tracked,
  type Violation,
  type WorkloadSighting,
} from "./run-record.js";
import { settleAndList, sweepWorkloads } from "./run-end.js";
import { summarize } from "./run-summary.js";
import { type Percentiles, bump } from "./stats.js";
import { type WatchCrew, createWatchCrew } from "./watch-crew.js";

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
  /** The daemon's --concurrency (each daemon's, in a cluster). Default 4. */
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
  /**
   * This many daemons on one PostgreSQL the run starts (durable), instead of one daemon on its
   * embedded store; the faults then include database restarts and one daemon's connection to it cut.
   */
  readonly cluster?: number;
  /** A cluster's --lease-ms. Default 10000, the daemon's own default. */
  readonly leaseMs?: number;
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
  /** When each daemon was down, and (in a cluster) when the database was out of reach. */
  readonly outages: { readonly daemons: readonly Downtime[]; readonly database: readonly StoreOutage[] };
  readonly durationMs: number;
  /** The report, as printed by `npm run chaos`. */
  readonly table: string;
}

const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/**
 * How much more a daemon generation may keep at rest at its end than at its start: V8 keeps
 * part of the heap it grew, and the mix moves messages of up to 2 MiB. The report says, per
 * generation, how large a leak per instance would have crossed it.
 */
const RSS_HEADROOM_BYTES = 96 * 2 ** 20;
/** How many more descriptors of its own a daemon may hold at rest at its end than at its start. */
const FDS_HEADROOM = 4;

type FaultKind = "workload-kill" | "daemon-restart" | "proxy-cut" | "stop" | ClusterFaultKind;
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
  const leaseMs = options.leaseMs ?? 10_000;
  const loadMs = Math.round(options.seconds * 1000);
  const prng = createPrng(options.seed);

  const runDir = mkdtempSync(join(tmpdir(), "nt-chaos-"));
  const heartbeatDir = join(runDir, "heartbeats");
  mkdirSync(heartbeatDir);
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    CHAOS_HEARTBEAT_DIR: heartbeatDir,
  };
  // The daemon passes its environment on to workloads; the harness's own flags stay out of it.
  delete env.NODE_OPTIONS;
  const args = [
    "--workload-mode",
    mode,
    // The harness tells which instance a workload process runs from its environment (to excuse
    // the instances of the workloads it kills); a warm runner learns its instance after it
    // started. Warm runners are tested in test/warm-workloads.test.ts.
    "--warm-workloads",
    "0",
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
  ];
  const transport = options.transport ?? "tcp";
  const clusterRig: ClusterRig | undefined =
    options.cluster === undefined
      ? undefined
      : await createClusterRig({
          cli: CLI,
          root: ROOT,
          runDir,
          daemons: options.cluster,
          leaseMs,
          transport,
          args,
          env,
          log,
        });
  const rig: Rig =
    clusterRig ??
    createSingleRig({
      cli: CLI,
      root: ROOT,
      runDir,
      listen: transport === "unix" ? `unix:${join(runDir, "d.sock")}` : `127.0.0.1:${await freePort()}`,
      args,
      env,
      log,
    });
  const daemons = rig.daemons;
  const first = daemons[0] as (typeof daemons)[number];
  log(
    `chaos: seed ${options.seed}, ${options.seconds} s of load, ${clusterRig ? `a cluster of ${daemons.length} daemons on PostgreSQL (lease ${leaseMs} ms), ` : ""}${mode} mode, concurrency ${concurrency}, grace ${stopGraceMs} ms; run dir ${runDir}`,
  );
  // Whatever goes wrong in the harness itself, the daemons (and the database) do not outlive it.
  try {
    await rig.startAll();

    const tracked = new Map<string, Tracked>();
    const observers: Observer[] = [];
    // In a cluster, calls, stops and the caller's watches each go through a daemon drawn apart.
    const daemonDraws = prng.fork("daemons");
    const anyDaemon = () => (daemons.length > 1 ? daemonDraws.int(0, daemons.length - 1) : 0);
    const which = (d: number) => (clusterRig ? { daemon: d } : {});
    const callerLogs = daemons.map((slot) => {
      const log = new ObserverLog(
        clusterRig ? `the caller's executor on ${slot.name}` : "the caller's executor",
      );
      observers.push({ kind: "caller", log, wide: false, breaks: () => 0, ...which(slot.index) });
      return log;
    });
    const faults: Record<string, number> = {};
    const poolKills: number[] = [];
    let outstanding = 0;
    let phase: Tracked["phase"] = "warm-up";
    let callers: readonly Executor[];
    let crew: WatchCrew | undefined;

    const executorFor = (address: string) =>
      new PlatformExecutor({
        address,
        accessToken: undefined,
        deploymentId: undefined,
        tlsCaFile: undefined,
      });

    const submit = (
      kind: ChaosKind,
      p: Prng,
      watch: boolean,
      fixed?: readonly unknown[],
      through = anyDaemon(),
    ): Tracked => {
      const args = fixed ?? argsFor(kind, p);
      const submittedAt = Date.now();
      setExecutor(callers[through] as Executor);
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
        ...which(through),
      };
      tracked.set(t.id, t);
      outstanding++;
      const off = handle.onChange(() => {
        if (!handle.isDone() || t.doneAt !== undefined) return;
        t.doneAt = Date.now();
        outstanding--;
        off();
      });
      const w = anyDaemon();
      const callerLog = callerLogs[w] as ObserverLog;
      callerLog.expect(t.id);
      (callers[w] as Executor).watch(t.id, 0, (s) => callerLog.see(t.id, seenFromSnapshot(s), Date.now()));
      if (watch) crew?.watchMore(t, p);
      return t;
    };

    const stop = async (t: Tracked, when: StopRecord["when"], through = anyDaemon()) => {
      const record: StopRecord = {
        when,
        sentAt: Date.now(),
        ...(clusterRig ? { through } : {}),
        ackAt: undefined,
        refused: undefined,
        refusedCode: undefined,
        refusedAt: undefined,
      };
      t.stops.push(record);
      bump(faults, `stop (${when})`);
      try {
        // The executor's own stop (what `stopTaskInstance` calls) says whether the daemon knew the id.
        if (await (callers[through] as Executor).stop(t.id)) record.ackAt = Date.now();
        else {
          record.refusedAt = Date.now();
          record.refused = "unknown id";
          bump(faults, "stop refused (unknown id)");
        }
      } catch (error) {
        record.refusedAt = Date.now();
        record.refused = (error as Error).name;
        const code = (error as { code?: unknown }).code;
        record.refusedCode = typeof code === "string" ? code : undefined;
        bump(faults, `stop refused (${record.refused})`);
      }
    };

    // ---- warm-up and the baseline ----------------------------------------------------------
    const warm = daemons.map((slot) => executorFor(slot.address));
    callers = warm;
    const previousExecutor = setExecutor(warm[0] as Executor);
    const warmPrng = prng.fork("warm-up");
    const warmups = (["short", "short", "long", "throws", "big", "chatty", "cpu"] as const).map((k) =>
      submit(k, warmPrng, false),
    );
    // The grace kill acts only on a task that ignores its stop while it runs, and on a busy
    // machine the load's random stops mostly land on pending instances: a probe makes sure, a
    // stubborn task that would run for a minute, stopped once its heartbeat shows it running.
    const probe = submit("stubborn", warmPrng, false, [warmPrng.int(0, 1_000_000), 60_000]);
    await waitFor(
      () => probe.doneAt !== undefined || existsSync(join(heartbeatDir, probe.id)),
      settleBoundMs,
    );
    await stop(probe, "running");
    bump(faults, "grace probe: a stubborn task stopped once running");
    const probes = [probe];
    if (clusterRig) {
      const clusterPrng = prng.fork("cut probe");
      probes.push(
        await cutProbe({
          rig: clusterRig,
          prng: clusterPrng,
          heartbeatDir,
          submit: (through) =>
            submit("stubborn", clusterPrng, false, [clusterPrng.int(0, 1_000_000), 60_000], through),
          stop: (t, through) => stop(t, "running", through),
          timeoutMs: settleBoundMs,
          log,
        }),
      );
      bump(faults, "cut probe: stopped through another daemon while its own was cut off the database");
    }
    // Bounded: a call the daemon lost must fail the run's checks, not hang it.
    await waitFor(() => [...warmups, ...probes].every((t) => t.doneAt !== undefined), settleBoundMs);
    for (const executor of warm) await executor.close();
    const direct = new TaskServiceClient(first.address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 256 * 1024 * 1024,
      "grpc.use_local_subchannel_pool": 1,
    });
    const findings: string[] = [];
    // Every daemon generation is measured at rest near its start and near its end, against
    // itself: a restart must not wipe out what a generation leaked.
    const meters = daemons.map((slot) =>
      createGenerationMeter({
        ...(clusterRig ? { index: slot.index } : {}),
        daemon: () => ({ pid: slot.supervisor.pid, generation: slot.supervisor.generation }),
        busy: async () =>
          (await listAll(direct, [Status.STATUS_PENDING, Status.STATUS_RUNNING], findings)).map((i) => i.id),
        stop: (id) => {
          const t = tracked.get(id);
          if (t !== undefined) void stop(t, "quiet moment");
        },
        // A daemon of a cluster started again on its data directory adopts its predecessor's
        // pool workers, so its pool can be larger than its concurrency, and which of them are
        // busy cannot be told from outside: its listing says what it runs.
        workloads: () => (clusterRig && mode === "pool" ? 0 : workloadCount(slot.ours, mode, concurrency)),
        restWithinMs: settleBoundMs,
        peers: () => rig.peers(),
        fdsHeadroom: FDS_HEADROOM,
        log,
      }),
    );
    await Promise.all(
      meters.map((m) =>
        m.measure("start", { rssWindowMs: 3_000, waitMs: connectionIdleMs + 2_000, stopAll: false }),
      ),
    );

    // ---- clients, watchers, the proxy ------------------------------------------------------
    crew = await createWatchCrew({
      daemons,
      observers,
      callerLogs,
      downtimes: () => rig.downtimes(),
      executorFor,
      faults,
    });
    callers = crew.callers;
    phase = "load";

    const rogue = createRogueClient({
      address: first.address,
      prng: prng.fork("rogue"),
      realIds: () => [...tracked.keys()],
      appRoot: ROOT,
      maxMessageBytes: MAX_MESSAGE_BYTES,
      framesSocket: join(first.dataDir, "workload-frames.sock"),
    });

    // ---- load and faults -------------------------------------------------------------------
    // The harness's own lag blurs every time it records: say so when it was large.
    const lag = monitorEventLoopDelay({ resolution: 20 });
    lag.enable();
    const loadStart = Date.now();
    const gate = new LoadGate(loadStart);
    const cap = concurrency * 3;
    const workloadsSeen = new Map<string, WorkloadSighting[]>();
    const sampler = setInterval(() => {
      const now = Date.now();
      for (const w of workloadProcesses(rig.ours)) {
        if (w.instanceId === undefined) continue;
        const list = workloadsSeen.get(w.instanceId) ?? [];
        const known = list.find((s) => s.pid === w.pid);
        if (known) known.lastSeen = now;
        else list.push({ pid: w.pid, instanceId: w.instanceId, firstSeen: now, lastSeen: now });
        workloadsSeen.set(w.instanceId, list);
      }
      for (const [i, slot] of daemons.entries()) {
        const pid = slot.supervisor.pid;
        if (pid === undefined) continue;
        const g = (meters[i] as (typeof meters)[number]).of(pid);
        g.rssPeakBytes = Math.max(g.rssPeakBytes, rssBytes(pid) ?? 0);
        g.fdsPeak = Math.max(g.fdsPeak, openFds(pid) ?? 0);
      }
    }, 500);
    const reporter = setInterval(() => {
      const ended = [...tracked.values()].filter((t) => t.doneAt !== undefined).length;
      const rss = daemons.map((slot) => mib(rssBytes(slot.supervisor.pid ?? 0) ?? 0)).join(" / ");
      log(
        `chaos: t=${Math.round(gate.elapsed() / 1000)}s submitted ${tracked.size}, ended ${ended}, ` +
          `faults ${Object.entries(faults)
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")}; daemon RSS ${rss} MiB`,
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

    const schedule = [
      ...faultSchedule(prng.fork("faults"), loadMs),
      ...(clusterRig ? clusterSchedule(prng.fork("cluster faults"), loadMs) : []),
    ].sort((a, b) => a.at - b.at);
    const targets = prng.fork("targets");
    // Drawn apart, so a daemon alone keeps the schedule of its seeds.
    const clusterTargets = prng.fork("cluster targets");
    // One daemon restart at a time (its quiet moments, the kill, the start, the takeover), as
    // ever. The outages themselves are one at a time too (a daemon down until it listens again,
    // the database restarting, a daemon cut off it): a daemon started while the database is down
    // cannot start, and outages on top of each other would outlast the lease. A database fault
    // that strikes meanwhile waits its turn (one of each kind at most), so short runs meet every
    // kind, even after the load (then before the settling). In a
    // cluster, half a lease passes between two outages: every daemon renews its lease in between,
    // so each outage is judged on its own, shorter than the lease.
    const outageGapMs = clusterRig ? leaseMs / 2 : 0;
    let restarting: Promise<void> | undefined;
    let outage: Promise<void> | undefined;
    const queued = new Set<ClusterFaultKind>();
    const pending = new Set<Promise<void>>();
    const exclusively = async (work: () => Promise<void>): Promise<void> => {
      while (outage !== undefined) await outage.catch(() => undefined);
      const mine = work().finally(() => sleep(outageGapMs));
      outage = mine;
      try {
        await mine;
      } finally {
        if (outage === mine) outage = undefined;
      }
    };
    const databaseFault = (kind: ClusterFaultKind, work: () => Promise<void>) => {
      if (outage !== undefined) queued.add(kind);
      const run = exclusively(async () => {
        queued.delete(kind);
        // One that waited past the end of the load still strikes, before the settling.
        await gate.pass();
        await work();
      }).finally(() => pending.delete(run));
      pending.add(run);
    };
    let rogueAction: Promise<void> = Promise.resolve();
    // A quiet moment: load, faults and rogue pause, every unfinished instance is stopped, and
    // the daemon is measured once at rest.
    const lull = async (which: "start" | "end", victim: number) => {
      gate.close();
      bump(faults, "quiet moments (daemon measured at rest)");
      await rogueAction;
      await (meters[victim] as (typeof meters)[number]).measure(which, {
        rssWindowMs: 3_000,
        waitMs: connectionIdleMs + 2_000,
        stopAll: true,
      });
      gate.open();
    };
    const restartDaemon = async (victim: number, downMs: number, loadedMs: number) => {
      const { supervisor } = daemons[victim] as (typeof daemons)[number];
      await lull("end", victim);
      // The load picks up again first, so the kill lands on workloads starting and running.
      await sleep(loadedMs);
      bump(faults, "daemon SIGKILL + restart");
      const unfinished = [...tracked.values()].filter((t) => t.doneAt === undefined);
      await exclusively(async () => {
        await supervisor.kill9();
        await sleep(downMs);
        await supervisor.start();
      });
      // The new daemon's warm-up, under load: what the kill left pending runs, running
      // workloads reattach or are given up (in a cluster, the others fail them once its lease
      // runs out); only then is it measured.
      const takeover = clusterRig ? leaseMs * 1.5 : reconnectWindowMs;
      await waitFor(() => unfinished.every((t) => t.doneAt !== undefined), takeover + 2_000);
      await lull("start", victim);
    };
    const faultLoop = async () => {
      for (const event of schedule) {
        await gate.until(event.at);
        if (gate.elapsed() >= loadMs) break;
        switch (event.kind) {
          case "workload-kill": {
            const procs = workloadProcesses(rig.ours);
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
          case "daemon-restart": {
            if (restarting !== undefined) break;
            const victim = clusterRig ? clusterTargets.int(0, daemons.length - 1) : 0;
            restarting = restartDaemon(victim, targets.int(0, 1_500), targets.int(1_500, 3_000)).finally(
              () => {
                restarting = undefined;
              },
            );
            break;
          }
          case "postgres-restart": {
            if (queued.has(event.kind)) break;
            const rig = clusterRig as ClusterRig;
            const downMs = clusterTargets.int(POSTGRES_DOWN_MS.min, POSTGRES_DOWN_MS.max);
            databaseFault(event.kind, async () => {
              bump(faults, "PostgreSQL restart (fast shutdown, 0.5-3 s down, start)");
              await rig.restartPostgres(downMs);
            });
            break;
          }
          case "store-cut": {
            if (queued.has(event.kind)) break;
            const rig = clusterRig as ClusterRig;
            const victim = clusterTargets.int(0, daemons.length - 1);
            const { min, max } = storeCutMs(leaseMs);
            const downMs = clusterTargets.int(min, max);
            databaseFault(event.kind, async () => {
              bump(faults, `one daemon cut off PostgreSQL (${min / 1000}-${max / 1000} s)`);
              bump(faults, "  its connections to PostgreSQL cut", await rig.cutStore(victim, downMs));
            });
            break;
          }
          case "proxy-cut": {
            const lines = crew.cuttable.filter(() => targets.chance(0.6));
            bump(faults, "connections cut by the proxy", crew.cut(lines.length > 0 ? lines : crew.cuttable));
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
              // Through the daemon of the call, as the same client would: it lands after the call.
              void stop(t, when, t.daemon ?? 0);
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
    while (restarting !== undefined || pending.size > 0) await Promise.all([restarting, ...pending]);
    const faultsEnded = Date.now();
    clearInterval(reporter);
    lag.disable();
    if (lag.max >= 1e9)
      findings.push(
        `the harness's own event loop lagged up to ${Math.round(lag.max / 1e6)} ms (p99 ${Math.round(lag.percentile(99) / 1e6)} ms) during the load: what it timed is that coarse`,
      );
    log(
      `chaos: faults over after ${Math.round((faultsEnded - loadStart) / 1000)} s; ${tracked.size} instances; settling`,
    );

    // ---- settle ------------------------------------------------------------------------------
    const { unfinished, settleMs, final, duplicates } = await settleAndList(
      direct,
      faultsEnded,
      settleBoundMs,
      findings,
      log,
      () => crew.thawSlow(),
    );
    // Watchers get a little time to catch up with the end; the checker says who did not.
    await waitFor(() => {
      for (const t of tracked.values()) if (!t.handle.isDone() && final.has(t.id)) return false;
      for (const o of observers) {
        const ids = o.wide ? final.keys() : o.log.ids();
        for (const id of ids) {
          const row = final.get(id);
          if (row !== undefined && isFinal(row.status) && o.log.state(id)?.terminal === undefined)
            return false;
        }
      }
      return true;
    }, 20_000);

    await sdkListingCheck(findings);

    // ---- after the load: leaks ---------------------------------------------------------------
    clearInterval(sampler);
    rogue.close();
    await crew.close();
    if (previousExecutor !== undefined) setExecutor(previousExecutor);
    // Connections the clients left are closed once idle for the daemon's --connection-idle-ms.
    await Promise.all(
      meters.map((m) =>
        m.measure("end", { rssWindowMs: 8_000, waitMs: connectionIdleMs + 10_000, stopAll: false }),
      ),
    );
    direct.close();
    const generations = meters.flatMap((m) => m.generations);
    for (const [i, m] of meters.entries()) {
      const { crashed, replacements } = (daemons[i] as (typeof daemons)[number]).supervisor;
      for (const g of m.generations) {
        if (crashed.has(g.generation))
          g.cutShort = "a daemon generation that exited on its own (see 'alive')";
        else if (replacements.has(g.generation))
          g.cutShort = "a daemon generation started after its predecessor exited on its own (see 'alive')";
      }
    }
    for (const g of generations) {
      const from = g.start?.at ?? Number.POSITIVE_INFINITY;
      const to = g.end?.at ?? Number.NEGATIVE_INFINITY;
      g.instances = [...final.values()].filter(
        (row) => row.finishedAt !== undefined && row.finishedAt > from && row.finishedAt <= to,
      ).length;
    }
    const memory: MemoryFigures = {
      generations,
      rssHeadroomBytes: RSS_HEADROOM_BYTES,
      fdsHeadroom: FDS_HEADROOM,
    };
    const shutdownExitCodes = await rig.stopAll(15_000);
    const leftoverWorkloads = await sweepWorkloads(rig.ours, findings);
    await rig.close();

    // ---- check and report --------------------------------------------------------------------
    const heartbeats = readHeartbeats(heartbeatDir);
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
      downtimes: rig.downtimes(),
      poolKills,
      daemonCrashes: rig.troubles(),
      shutdownExitCodes,
      memory,
      leftoverWorkloads,
      rogueBreaches: rogue.report.breaches,
      rogueLeaks: rogue.report.leaks,
      rogueAnswered: rogue.report.answered,
      workloadsSeen,
      ...(clusterRig
        ? {
            cluster: {
              leaseMs,
              storeOutages: clusterRig.storeOutages,
              members: clusterRig.members,
            },
          }
        : {}),
    });
    attachLogLines(checked.violations, runDir);
    findings.push(
      ...checked.findings,
      ...observationFindings(observers, daemonLogFiles(runDir), tracked, final),
      ...(clusterRig ? clusterFindings(clusterRig, final, heartbeats) : []),
    );

    const summary = summarize(tracked, final, observers);
    const violations = checked.violations;
    const keep = options.keep === true || violations.length > 0;
    if (!keep) rmSync(runDir, { recursive: true, force: true });

    const partial = {
      seed: options.seed,
      seconds: options.seconds,
      settings: {
        ...(clusterRig
          ? { cluster: daemons.length, "lease (ms)": leaseMs, store: "PostgreSQL, durable" }
          : {}),
        mode,
        concurrency,
        "stop grace (ms)": stopGraceMs,
        ...(clusterRig ? {} : { "reconnect window (ms)": reconnectWindowMs }),
        "settle bound (ms)": settleBoundMs,
        transport,
        "daemon generations": daemons.map((slot) => slot.supervisor.generation).join(" + "),
      },
      runDir: keep ? runDir : undefined,
      submitted: { total: tracked.size, byKind: summary.submittedByKind },
      faults: { ...faults, ...rogueFaults(rogue.report) },
      outcomes: summary.outcomes,
      outcomesByKind: summary.outcomesByKind,
      invariants: checked.invariants,
      violations,
      latency: summary.latency,
      memory,
      settleMs,
      watchers: summary.watchers,
      findings,
      rogue: rogue.report,
      outages: { daemons: rig.downtimes(), database: clusterRig?.storeOutages ?? [] },
      durationMs: Date.now() - started,
    };
    return { ...partial, table: formatReport(partial) };
  } catch (error) {
    await rig.stopAll(5_000).catch(() => undefined);
    await rig.close().catch(() => undefined);
    throw error;
  }
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
