import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** How often the checkpointer moves the write-ahead log into the database file. */
const CHECKPOINT_EVERY_MS = 500;

/**
 * The checkpointer's thread, as source: it needs no file of its own (the store runs from `dist/`
 * and, in tests, from TypeScript sources). It opens the database on a connection of its own and
 * checkpoints passively: writers go on meanwhile.
 */
const SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.module);
const db = new Database(workerData.file);
db.pragma("checkpoint_fullfsync = ON");
const timer = setInterval(() => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } catch (error) {
    parentPort.postMessage({ error: String(error && error.message || error) });
  }
}, workerData.everyMs);
parentPort.on("message", (message) => {
  if (message !== "close") return;
  clearInterval(timer);
  try { db.close(); } finally { parentPort.close(); }
});
`;

/**
 * Checkpoints an SQLite database's write-ahead log from a thread of its own. Left to SQLite, the
 * commit that crosses 1,000 pages of log checkpoints it, fsync included, on the daemon's event
 * loop: a progress report that waited on it came several milliseconds late (a third of the
 * daemon's progress p99). The main connection turns its own checkpoints off only once this
 * thread runs, and on again if it fails.
 */
export class WalCheckpointer {
  readonly #worker: Worker;
  #closed: Promise<void> | undefined;

  /** `fallback` turns the main connection's own checkpoints back on, should this thread fail. */
  constructor(file: string, fallback: () => void) {
    const module = createRequire(import.meta.url).resolve("better-sqlite3");
    this.#worker = new Worker(SOURCE, {
      eval: true,
      workerData: { file, module, everyMs: CHECKPOINT_EVERY_MS },
    });
    this.#worker.unref();
    let failed = false;
    const fail = () => {
      if (failed || this.#closed !== undefined) return;
      failed = true;
      fallback();
    };
    this.#worker.on("message", (message: { error?: string }) => {
      if (message.error !== undefined) fail();
    });
    this.#worker.on("error", fail);
    this.#worker.on("exit", fail);
  }

  /** Stops the thread and closes its connection; resolves once it is gone. */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => void this.#worker.terminate(), 5_000);
      this.#worker.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      this.#worker.postMessage("close");
    });
    return this.#closed;
  }
}
