/**
 * The daemons of a cluster chaos run (`npm run chaos -- --cluster 3`): one durable PostgreSQL
 * the harness starts (`chaos/chaos-postgres.ts`), and N daemons on it, each reaching it through
 * a proxy line of its own (`chaos/store-proxy.ts`), so the harness can cut one daemon off the
 * database while the others keep it. Each daemon has its own data directory (its workload socket) and logs in
 * `<runDir>/daemon-<i>/`, and listens on an address fixed for the run, so a restarted daemon is
 * found where its clients left it.
 */
import { join } from "node:path";
import { type ChaosPostgres, startChaosPostgres } from "./chaos-postgres.js";
import { type DaemonSlot, type Rig, createSlot, slotDowntimes, slotTroubles } from "./daemon-rig.js";
import { freePort } from "./run-helpers.js";
import type { StoreOutage } from "./run-record.js";
import { type StoreProxy, startStoreProxy } from "./store-proxy.js";

export interface ClusterRigOptions {
  readonly cli: string;
  readonly root: string;
  readonly runDir: string;
  readonly daemons: number;
  readonly leaseMs: number;
  readonly transport: "tcp" | "unix";
  /** `serve` flags every daemon gets, besides its address, data directory and store. */
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly log: (line: string) => void;
}

/** One generation of one daemon, by the name it joined the cluster under. */
export interface ClusterMember {
  readonly daemon: number;
  readonly generation: number;
  readonly joinedAt: number;
}

export interface ClusterRig extends Rig {
  readonly leaseMs: number;
  readonly postgres: ChaosPostgres;
  /** The database restarts and the connections cut, as they happened. */
  readonly storeOutages: readonly StoreOutage[];
  /** Every name a daemon joined the cluster under ("joined the cluster" in its log). */
  readonly members: ReadonlyMap<string, ClusterMember>;
  /** Restarts PostgreSQL with `downMs` between its stop and its start. */
  restartPostgres(downMs: number): Promise<void>;
  /** Cuts daemon `index` off the database for `downMs`; resolves how many connections were cut. */
  cutStore(index: number, downMs: number): Promise<number>;
}

export async function createClusterRig(o: ClusterRigOptions): Promise<ClusterRig> {
  const postgres = await startChaosPostgres(o.runDir, join(o.runDir, "postgres"));
  let proxy: StoreProxy | undefined;
  try {
    proxy = await startStoreProxy(postgres.target, o.daemons);
    const storeProxy = proxy;
    const crashes: string[] = [];
    const storeOutages: StoreOutage[] = [];
    const members = new Map<string, ClusterMember>();
    const slots: DaemonSlot[] = [];
    for (let i = 0; i < o.daemons; i++) {
      const dir = join(o.runDir, `daemon-${i}`);
      const listen =
        o.transport === "unix" ? `unix:${join(o.runDir, `d${i}.sock`)}` : `127.0.0.1:${await freePort()}`;
      slots.push(
        createSlot({
          cli: o.cli,
          root: o.root,
          index: i,
          name: `daemon ${i}`,
          listen,
          dataDir: join(dir, "data"),
          logDir: dir,
          args: [
            ...o.args,
            "--store",
            postgres.urlVia(storeProxy.addresses[i] as string),
            "--lease-ms",
            String(o.leaseMs),
          ],
          env: o.env,
          log: o.log,
          crashes,
          // A daemon of a cluster exits when it finds its lease taken; its operator starts it again.
          restartOnCrash: true,
          onLog: (generation, entry) => {
            if (entry.msg === "joined the cluster" && typeof entry.owner === "string")
              members.set(entry.owner, { daemon: i, generation, joinedAt: Date.now() });
          },
        }),
      );
    }
    return {
      daemons: slots,
      ours: (address) => slots.some((slot) => slot.ours(address)),
      troubles: () => slotTroubles(slots, crashes),
      downtimes: () => slotDowntimes(slots),
      // One after the other: a cluster's first daemons migrate the schema, and at once they
      // would only wait for each other's lock on a 2-core machine.
      async startAll() {
        for (const slot of slots) await slot.supervisor.start();
      },
      // Its connections to PostgreSQL are its pool's, within the pool's size.
      peers: () => [storeProxy.pid],
      stopAll: (timeoutMs) => Promise.all(slots.map((slot) => slot.supervisor.stop(timeoutMs))),
      async close() {
        await storeProxy.close();
        await postgres.stop();
      },
      leaseMs: o.leaseMs,
      postgres,
      storeOutages,
      members,
      async restartPostgres(downMs) {
        const outage: StoreOutage = {
          kind: "postgres restart",
          from: Date.now(),
          to: undefined,
          daemon: undefined,
        };
        storeOutages.push(outage);
        const { to } = await postgres.restart(downMs);
        outage.to = to;
      },
      async cutStore(index, downMs) {
        // Timed by the proxy's own process: the outage is when it says it cut and opened again.
        const outage: StoreOutage = {
          kind: "connection cut",
          from: Date.now(),
          to: undefined,
          daemon: index,
        };
        const at = storeOutages.push(outage) - 1;
        const { cut, from, to } = await storeProxy.cutFor(index, downMs);
        storeOutages[at] = { ...outage, from: Math.min(outage.from, from), to };
        return cut;
      },
    };
  } catch (error) {
    await proxy?.close();
    await postgres.stop();
    throw error;
  }
}
