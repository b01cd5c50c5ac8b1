import type { Logger } from "pino";
import type { Store } from "../store/store.js";

/** Rows one delete statement removes at most, so a large backlog never holds the store long. */
const BATCH = 1_000;
const MIN_INTERVAL_MS = 1_000;
const MAX_INTERVAL_MS = 60_000;

/**
 * Deletes finished instances older than `retentionMs` (by their end), now and then: every tenth
 * of the retention, between 1 s and 60 s. Running and pending instances are never touched. In a
 * cluster every daemon sweeps; a delete is the same whoever runs it.
 * @returns a function that stops it.
 */
export function startRetention(store: Store, retentionMs: number, log: Logger): () => void {
  let sweeping = false;
  const sweep = async () => {
    if (sweeping) return;
    sweeping = true;
    try {
      const before = Date.now() - retentionMs;
      let deleted = 0;
      for (;;) {
        const n = await store.deleteFinished(before, BATCH);
        deleted += n;
        if (n < BATCH) break;
      }
      if (deleted > 0) log.info({ deleted, retentionMs }, "deleted finished instances past their retention");
    } catch (error) {
      log.warn({ err: error }, "retention sweep failed; trying again later");
    } finally {
      sweeping = false;
    }
  };
  const interval = Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, Math.floor(retentionMs / 10)));
  const timer = setInterval(() => void sweep(), interval);
  timer.unref();
  void sweep();
  return () => clearInterval(timer);
}
