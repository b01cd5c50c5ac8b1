/**
 * Clusters for tests: several daemons on one PostgreSQL, each cluster on a fresh database of the
 * test server, so every cluster starts empty.
 */
import pg from "pg";
import type { PlatformExecutor as PlatformExecutorType } from "numerous-tasks";
import { PlatformExecutor } from "numerous-tasks";
import type { TestPostgres } from "./embedded-postgres.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./daemon-process.js";
import { type TcpGate, createTcpGate } from "./tcp-gate.js";

let databases = 0;

/** A fresh database on the test server, so every cluster starts empty. */
export async function freshDatabase(postgres: TestPostgres): Promise<string> {
  const name = `cluster_${process.pid}_${++databases}`;
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return postgres.url.replace(/\/[^/]+$/, `/${name}`);
}

export interface Cluster {
  readonly daemons: DaemonProcess[];
  readonly url: string;
  /** A client of daemon `index`. */
  client(index: number): PlatformExecutorType;
  close(): Promise<void>;
}

/**
 * Starts daemons of concurrency `concurrencies[i]` on a fresh database, with `extra` arguments and
 * the stop grace `stopGraceMs`.
 */
export async function startCluster(
  postgres: TestPostgres,
  concurrencies: readonly number[],
  extra: readonly string[] = [],
  stopGraceMs = 2000,
): Promise<Cluster> {
  const url = await freshDatabase(postgres);
  const daemons = await Promise.all(
    concurrencies.map((concurrency) =>
      startDaemon({
        args: [
          "--store",
          url,
          "--concurrency",
          String(concurrency),
          "--stop-grace-ms",
          String(stopGraceMs),
          ...extra,
        ],
      }),
    ),
  );
  return clusterOf(daemons, url);
}

/**
 * The cluster of daemons a test started itself on the database of `url`: its clients, and a close
 * that closes them, stops the daemons, deletes their data and then runs `more` (a gate, a
 * directory of the test's own).
 */
export function clusterOf(
  daemons: DaemonProcess[],
  url: string,
  more: () => Promise<void> | void = () => {},
): Cluster {
  const clients: PlatformExecutor[] = [];
  return {
    daemons,
    url,
    client(index) {
      const daemon = daemons[index] as DaemonProcess;
      const client = new PlatformExecutor({
        address: daemon.address,
        accessToken: undefined,
        deploymentId: undefined,
        tlsCaFile: undefined,
      });
      clients.push(client);
      return client;
    },
    async close() {
      await Promise.all(clients.map((client) => client.close()));
      await Promise.all(
        daemons.map((daemon) => (daemon.child.exitCode === null ? daemon.stop() : undefined)),
      );
      for (const daemon of daemons) removeDataDir(daemon.dataDir);
      await more();
    },
  };
}

/**
 * A fresh database, and a TCP gate in front of it: a daemon given `gatedUrl` reaches the database
 * only while the gate is open. The test closes the gate (a cluster's `more`).
 */
export async function gatedDatabase(
  postgres: TestPostgres,
): Promise<{ url: string; gatedUrl: string; gate: TcpGate }> {
  const url = await freshDatabase(postgres);
  const target = new URL(url);
  const gate = await createTcpGate({ host: target.hostname, port: Number(target.port) });
  const gated = new URL(url);
  gated.host = gate.address;
  return { url, gatedUrl: gated.toString(), gate };
}
