/**
 * The embedded store's own thread: it opens the SQLite database and runs every call the daemon
 * makes of it (see threaded-store.ts), so a commit's fsync or a WAL checkpoint never holds up the
 * daemon's event loop, where progress and stops are passed on.
 */
import { parentPort, workerData } from "node:worker_threads";
import { openSqliteStore } from "./sqlite-store.js";

/** A call of one of the store's methods. */
export interface StoreCall {
  readonly id: number;
  readonly method: string;
  readonly args: unknown[];
}

/** Its answer: the value, or the error with what the caller may test (name, message, code). */
export type StoreAnswer =
  | { readonly id: number; readonly value: unknown }
  | {
      readonly id: number;
      readonly error: { name: string; message: string; code?: unknown; stack?: string };
    };

const port = parentPort;
if (port === null) throw new Error("store-thread.ts runs as a worker thread");

try {
  const store = await openSqliteStore((workerData as { dataDir: string }).dataDir);
  const methods = store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  port.on("message", (call: StoreCall) => {
    const method = methods[call.method];
    const answer = (reply: StoreAnswer) => port.postMessage(reply);
    if (typeof method !== "function") {
      answer({ id: call.id, error: { name: "TypeError", message: `the store has no ${call.method}` } });
      return;
    }
    method.apply(store, call.args).then(
      (value) => answer({ id: call.id, value }),
      (error: unknown) => answer({ id: call.id, error: errorRecord(error) }),
    );
  });
  port.postMessage({ ready: true, file: store.file });
} catch (error) {
  port.postMessage({ ready: false, error: errorRecord(error) });
}

function errorRecord(error: unknown): { name: string; message: string; code?: unknown; stack?: string } {
  if (!(error instanceof Error)) return { name: "Error", message: String(error) };
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return {
    name: error.name,
    message: error.message + (error.message.endsWith(cause) ? "" : cause),
    ...("code" in error ? { code: error.code } : {}),
    ...(error.stack === undefined ? {} : { stack: error.stack }),
  };
}
