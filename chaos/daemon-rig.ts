/**
 * The daemons of a chaos run: one on its embedded store (`createSingleRig`), or several on one
 * PostgreSQL (`createClusterRig` in `chaos/cluster-rig.ts`). The run drives both the same way;
 * a cluster adds its own faults (the database restarted, one daemon's connection to it cut).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type DaemonCrash, type DaemonSupervisor, createDaemonSupervisor } from "./daemon-supervisor.js";
import type { Downtime } from "./run-record.js";

/** One daemon of the run, across its generations (the harness kills and restarts it). */
export interface DaemonSlot {
  readonly index: number;
  /** "the daemon" when alone, "daemon 1" in a cluster: how reports name it. */
  readonly name: string;
  /** Where it listens, the same for every generation. */
  readonly address: string;
  readonly dataDir: string;
  readonly supervisor: DaemonSupervisor;
  /** Whether a workload reaching the daemon at `address` (its NUMEROUS_EXECUTOR_ADDRESS) is this daemon's. */
  ours(address: string): boolean;
}

export interface Rig {
  readonly daemons: readonly DaemonSlot[];
  /** Whether a workload is one of any daemon of the rig. */
  ours(address: string): boolean;
  /** Exits the harness did not cause, and restarts that failed, in words. */
  troubles(): string[];
  /** When each daemon was down because the harness killed it, with its index. */
  downtimes(): Downtime[];
  startAll(): Promise<void>;
  /** SIGTERM to every daemon at once; their exit codes (null: killed after `timeoutMs`). */
  stopAll(timeoutMs: number): Promise<Array<number | null>>;
  /** Processes besides the harness whose live connections with a daemon are not the daemon's own. */
  peers(): number[];
  /** Whatever else the rig runs (a database, proxies); after {@link stopAll}. */
  close(): Promise<void>;
}

export interface SlotOptions {
  readonly cli: string;
  readonly root: string;
  readonly index: number;
  readonly name: string;
  readonly listen: string;
  readonly dataDir: string;
  readonly logDir: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly log: (line: string) => void;
  /** Where unexpected exits are written down, in words. */
  readonly crashes: string[];
  readonly onLog?: (generation: number, entry: Record<string, unknown>) => void;
  readonly restartOnCrash?: boolean;
}

export function createSlot(o: SlotOptions): DaemonSlot {
  mkdirSync(o.dataDir, { recursive: true });
  const supervisor: DaemonSupervisor = createDaemonSupervisor({
    cli: o.cli,
    root: o.root,
    listen: o.listen,
    dataDir: o.dataDir,
    logDir: o.logDir,
    args: o.args,
    env: o.env,
    ...(o.onLog ? { onLog: o.onLog } : {}),
    ...(o.restartOnCrash ? { restartOnCrash: true } : {}),
    onCrash: (crash: DaemonCrash) => {
      const text = `${o.name} generation ${crash.generation} (pid ${crash.pid}) exited on its own at ${new Date(crash.at).toISOString()} with ${crash.signal ?? `code ${crash.code}`}; stderr: ${crash.stderr.trim().slice(-600) || "(empty)"}; log ${supervisor.logFile(crash.generation)}`;
      o.crashes.push(text);
      o.log(`!! ${text}`);
    },
  });
  return {
    index: o.index,
    name: o.name,
    address: o.listen,
    dataDir: o.dataDir,
    supervisor,
    // Workloads reach the daemon at its address, or at a socket of its own in its data directory.
    ours: (address) => address === o.listen || address.startsWith(`unix:${o.dataDir}/`),
  };
}

/** What every rig reports the same way, from its slots. */
export function slotTroubles(slots: readonly DaemonSlot[], crashes: readonly string[]): string[] {
  return [
    ...crashes,
    ...slots.flatMap((slot) =>
      slot.supervisor.failedStarts
        .filter((f) => !f.afterCrash)
        .map(
          (f) =>
            `${slot.name} generation ${f.generation} failed to start at ${new Date(f.at).toISOString()}: ${f.stderr.trim().slice(-600)}`,
        ),
    ),
  ];
}

export function slotDowntimes(slots: readonly DaemonSlot[]): Downtime[] {
  return slots.flatMap((slot) => slot.supervisor.downtimes.map((d) => ({ ...d, daemon: slot.index })));
}

/** One daemon on its embedded store, in `<runDir>/data`, its logs in the run directory. */
export function createSingleRig(
  o: Omit<SlotOptions, "index" | "name" | "dataDir" | "logDir" | "crashes"> & { readonly runDir: string },
): Rig {
  const crashes: string[] = [];
  const slot = createSlot({
    ...o,
    index: 0,
    name: "daemon",
    dataDir: join(o.runDir, "data"),
    logDir: o.runDir,
    crashes,
  });
  return {
    daemons: [slot],
    ours: slot.ours,
    troubles: () => slotTroubles([slot], crashes),
    downtimes: () => slotDowntimes([slot]),
    startAll: () => slot.supervisor.start(),
    stopAll: async (timeoutMs) => [await slot.supervisor.stop(timeoutMs)],
    peers: () => [],
    close: async () => {},
  };
}
