/**
 * The embedded SQLite store, run on a thread of its own: the daemon's calls cross to it as
 * messages and their answers come back, so the daemon's event loop never waits on SQLite (a
 * durable commit's fsync, a WAL checkpoint, a big read). better-sqlite3 is synchronous: on the
 * main thread each of those stops every progress message and stop for as long as it takes.
 */
import { Worker } from "node:worker_threads";
import type { Store } from "../store.js";
import type { StoreAnswer, StoreCall } from "./store-thread.js";

/** The thread's entry: from source under tsx, or from the build. */
const ENTRY = new URL(
  import.meta.url.endsWith(".ts") ? "./store-thread.ts" : "./store-thread.js",
  import.meta.url,
);

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** Opens the store in `dataDir` on a thread of its own; refuses as openSqliteStore does. */
export async function openThreadedSqliteStore(dataDir: string): Promise<Store & { readonly file: string }> {
  const worker = new Worker(ENTRY, { workerData: { dataDir } });
  const file = await new Promise<string>((resolve, reject) => {
    const failed = (error: Error) => reject(error);
    worker.once("error", failed);
    worker.once("exit", (code) =>
      reject(new Error(`the store thread exited (${code}) before it opened the store`)),
    );
    worker.once("message", (message: { ready: boolean; file?: string; error?: StoreAnswerError }) => {
      worker.off("error", failed);
      worker.removeAllListeners("exit");
      if (message.ready) resolve(message.file as string);
      else reject(toError(message.error as StoreAnswerError));
    });
  }).catch(async (error: unknown) => {
    await worker.terminate();
    throw error;
  });
  return new ThreadedStore(worker, file).store;
}

type StoreAnswerError = Extract<StoreAnswer, { error: unknown }>["error"];

class ThreadedStore {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #next = 0;
  /** Why calls are refused: the thread died, or the store was closed. */
  #gone: Error | undefined;
  readonly store: Store & { readonly file: string };

  constructor(worker: Worker, file: string) {
    this.#worker = worker;
    worker.on("message", (answer: StoreAnswer) => {
      const pending = this.#pending.get(answer.id);
      if (pending === undefined) return;
      this.#pending.delete(answer.id);
      if ("error" in answer) pending.reject(toError(answer.error));
      else pending.resolve(answer.value);
    });
    const died = (why: string) => {
      this.#gone ??= new Error(`the embedded store's thread ${why}`);
      for (const pending of this.#pending.values()) pending.reject(this.#gone);
      this.#pending.clear();
    };
    worker.on("error", (error) => died(`failed: ${error.message}`));
    worker.on("exit", (code) => died(`exited (${code})`));
    const call = (method: string, args: unknown[]) => this.#call(method, args);
    const close = async () => {
      if (this.#gone !== undefined) return;
      try {
        await this.#call("close", []);
      } finally {
        this.#gone = new Error("the embedded store is closed");
        await this.#worker.terminate();
      }
    };
    // Every method of the Store interface is a call on the thread; `file` and `close` are local.
    this.store = new Proxy({} as Store & { readonly file: string }, {
      get(_target, property) {
        if (property === "file") return file;
        if (property === "close") return close;
        // Not a method: a store on this thread is no cluster's, and no promise.
        if (property === "then" || property === "shared" || typeof property !== "string") return undefined;
        return (...args: unknown[]) => call(property, args);
      },
    });
  }

  #call(method: string, args: unknown[]): Promise<unknown> {
    if (this.#gone !== undefined) return Promise.reject(this.#gone);
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const message: StoreCall = { id, method, args };
      this.#worker.postMessage(message);
    });
  }
}

function toError(record: StoreAnswerError): Error {
  const error = new Error(record.message);
  error.name = record.name;
  if (record.code !== undefined) Object.assign(error, { code: record.code });
  return error;
}
