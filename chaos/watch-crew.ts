/**
 * Who watches a chaos run besides the caller: SDK executors and raw gRPC streams, each on a line
 * of a proxy the harness can cut (`chaos/tcp-proxy.ts`), a deployment-wide auditor per daemon,
 * and slow watchers that stop reading their stream until the end. Alone, every line leads to
 * the one daemon; in a cluster the watchers are spread over the daemons, so each one's stream
 * must carry what the others ran.
 *
 * Per daemon, its proxy's lines are: the caller, its watcher executors, the crowd, its slow
 * watchers (with one daemon, the same lines in the same order as ever).
 */
import type { PlatformExecutor } from "numerous-tasks";
import { Status } from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import type { DaemonSlot } from "./daemon-rig.js";
import { ObserverLog } from "./observer-log.js";
import type { Prng } from "./prng.js";
import { RawWatch } from "./raw-watch.js";
import { keptAwake, seenFromSnapshot } from "./run-helpers.js";
import { type Downtime, type Observer, type Tracked, seenFromWire } from "./run-record.js";
import { bump } from "./stats.js";
import { type TcpProxy, createTcpProxy } from "./tcp-proxy.js";

const WATCHER_EXECUTORS = 3;
const SLOW_WATCHERS = 2;
const CROWD_LISTENERS = 12;
const CROWD_STREAMS = 20;

export interface WatchCrewOptions {
  readonly daemons: readonly DaemonSlot[];
  /** Observers the checker reads; a cluster's name the daemon each watches through. */
  readonly observers: Observer[];
  /** The callers' logs, one per daemon, made before the crew (the warm-up's calls are in them). */
  readonly callerLogs: readonly ObserverLog[];
  readonly downtimes: () => readonly Downtime[];
  readonly executorFor: (address: string) => PlatformExecutor;
  readonly faults: Record<string, number>;
}

export interface WatchCrew {
  /** The caller's executor of each daemon, through its caller line. */
  readonly callers: readonly PlatformExecutor[];
  /** Watches `t` from more executors and streams, as the draw from `p` says. */
  watchMore(t: Tracked, p: Prng): void;
  /** The lines a connection cut may hit. */
  readonly cuttable: ReadonlyArray<{ readonly daemon: number; readonly line: number }>;
  /** Cuts the open connections of these lines; returns how many. */
  cut(lines: ReadonlyArray<{ readonly daemon: number; readonly line: number }>): number;
  /** The slow watchers read again, and go on reading. */
  thawSlow(): void;
  close(): Promise<void>;
}

export async function createWatchCrew(o: WatchCrewOptions): Promise<WatchCrew> {
  const n = o.daemons.length;
  const cluster = n > 1;
  const watcherDaemon = (i: number) => i % n;
  const slowDaemon = (i: number) => (i + 1) % n;
  const layouts = o.daemons.map((_, d) => {
    const watchers = range(WATCHER_EXECUTORS).filter((i) => watcherDaemon(i) === d);
    const slows = range(SLOW_WATCHERS).filter((i) => slowDaemon(i) === d);
    const crowd = 1 + watchers.length;
    return { watchers, slows, crowd, lines: crowd + 1 + slows.length };
  });
  const proxies: TcpProxy[] = [];
  for (const [d, slot] of o.daemons.entries())
    proxies.push(await createTcpProxy(slot.address, (layouts[d] as { lines: number }).lines));
  const address = (d: number, line: number) => (proxies[d] as TcpProxy).addresses[line] as string;
  const daemonOf = (d: number) => (cluster ? { daemon: d } : {});
  const add = (observer: Observer) => {
    o.observers.push(observer);
    return observer.log;
  };
  // The SDK resumes its watch by itself; what the harness knows is how often it had to: the
  // connections cut and the daemon restarts while it watched.
  const breaksOn = (d: number, line: number, log: () => ObserverLog) => (id: string) => {
    const state = log().state(id);
    if (state === undefined) return 0;
    const to = state.terminal?.at ?? Date.now();
    const restarts = o
      .downtimes()
      .filter((x) => (x.daemon ?? 0) === d && x.from >= state.since && x.from <= to).length;
    return (proxies[d] as TcpProxy).cutsOn(line, state.since, to) + restarts;
  };

  const callers = o.daemons.map((_, d) => keptAwake(o.executorFor(address(d, 0))));
  for (const [d, log] of o.callerLogs.entries()) {
    const observer = o.observers.find((x) => x.log === log);
    if (observer !== undefined) observer.breaks = breaksOn(d, 0, () => log);
  }
  const watchers = range(WATCHER_EXECUTORS).map((i) => {
    const d = watcherDaemon(i);
    const line = 1 + (layouts[d] as { watchers: number[] }).watchers.indexOf(i);
    const log: ObserverLog = new ObserverLog(`watcher executor #${i}${cluster ? ` on daemon ${d}` : ""}`);
    add({ kind: "watcher", log, wide: false, breaks: breaksOn(d, line, () => log), ...daemonOf(d) });
    return { executor: keptAwake(o.executorFor(address(d, line))), log, daemon: d, line };
  });

  const rawWatches: RawWatch[] = [];
  const crowdStreams: RawWatch[] = [];
  let freezing = true;
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
    bump(o.faults, "crowd: many watchers on one instance");
    for (let j = 0; j < CROWD_LISTENERS; j++) {
      const w = watchers[j % watchers.length] as (typeof watchers)[number];
      const log: ObserverLog = new ObserverLog(`crowd listener ${j} (executor #${j % watchers.length})`);
      add({
        kind: "crowd",
        log,
        wide: false,
        breaks: breaksOn(w.daemon, w.line, () => log),
        ...daemonOf(w.daemon),
      });
      log.expect(t.id);
      w.executor.watch(t.id, 0, (s) => log.see(t.id, seenFromSnapshot(s), Date.now()));
    }
    for (let j = 0; j < CROWD_STREAMS; j++) {
      const d = j % n;
      let watch: RawWatch | undefined;
      const log = add({
        kind: "crowd",
        log: new ObserverLog(`crowd stream ${j}${cluster ? ` on daemon ${d}` : ""}`),
        wide: false,
        breaks: () => watch?.resumes ?? 0,
        notes: () =>
          `${watch?.messages ?? 0} message(s) received, last breaks: ${watch?.breaks.join(" / ") || "none"}`,
        ...daemonOf(d),
      });
      log.expect(t.id);
      watch = new RawWatch({
        address: address(d, (layouts[d] as { crowd: number }).crowd),
        ids: [t.id],
        onChanges: (instances, at) => {
          for (const instance of instances) {
            log.see(instance.id, seenFromWire(instance), at);
            if (instance.status >= Status.STATUS_COMPLETED && instance.status <= Status.STATUS_CANCELLED)
              watch?.close();
          }
        },
      });
      crowdStreams.push(watch);
    }
  };

  const wideWatch = (kind: "slow" | "auditor", name: string, d: number, line?: number) => {
    let watch: RawWatch | undefined;
    const proxy = proxies[d] as TcpProxy;
    const log = add({
      kind,
      log: new ObserverLog(name),
      wide: true,
      breaks: () => watch?.resumes ?? 0,
      notes: () =>
        `${watch?.messages ?? 0} message(s) received, resume point ${watch?.sequence}, last breaks: ${watch?.breaks.join(" / ") || "none"}`,
      ...daemonOf(d),
    });
    watch = new RawWatch({
      address: line === undefined ? (o.daemons[d] as DaemonSlot).address : address(d, line),
      ownConnection: true,
      onChanges: (instances, at) => {
        for (const instance of instances) log.see(instance.id, seenFromWire(instance), at);
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
  for (let d = 0; d < n; d++)
    wideWatch(
      "auditor",
      `the auditor${cluster ? ` of daemon ${d}` : ""} (a deployment-wide watch that always reads)`,
      d,
    );
  for (let i = 0; i < SLOW_WATCHERS; i++) {
    const d = slowDaemon(i);
    const layout = layouts[d] as { slows: number[]; crowd: number };
    wideWatch(
      "slow",
      `slow watcher #${i}${cluster ? ` on daemon ${d}` : ""} (does not read its stream until the end)`,
      d,
      layout.crowd + 1 + layout.slows.indexOf(i),
    );
  }

  const cuttable = layouts.flatMap((layout, d) =>
    [0, ...layout.watchers.map((_, k) => 1 + k), layout.crowd].map((line) => ({ daemon: d, line })),
  );
  return {
    callers,
    watchMore,
    cuttable,
    cut(lines) {
      let cut = 0;
      for (let d = 0; d < n; d++) {
        const mine = lines.filter((l) => l.daemon === d).map((l) => l.line);
        if (mine.length > 0) cut += (proxies[d] as TcpProxy).cut(mine);
      }
      return cut;
    },
    thawSlow() {
      freezing = false;
      for (let i = 0; i < SLOW_WATCHERS; i++) {
        const d = slowDaemon(i);
        const layout = layouts[d] as { slows: number[]; crowd: number };
        (proxies[d] as TcpProxy).thaw(layout.crowd + 1 + layout.slows.indexOf(i));
      }
    },
    async close() {
      for (const watch of [...rawWatches, ...crowdStreams]) watch.close();
      for (const caller of callers) await caller.close();
      for (const w of watchers) await w.executor.close();
      for (const proxy of proxies) await proxy.close();
    },
  };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
