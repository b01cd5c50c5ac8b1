import type { Logger } from "pino";
import type { ClusterStore } from "../store/cluster-store.js";
import type { ActiveInstance } from "./active-instance.js";
import { RetryPause } from "../retry-pause.js";

export interface StartGateOptions {
  readonly store: ClusterStore;
  readonly owner: string;
  readonly log: Logger;
  /** Records that the attempt began at `at` (ms since the epoch). */
  readonly began: (active: ActiveInstance, at: number) => void;
  /** Stops the held instances of `ids`, as an event of their stop would. */
  readonly stop: (ids: readonly string[]) => void;
}

/**
 * How recent the proof that a row has no stop must be for a workload to begin it on that proof
 * alone. The attempt is recorded as begun when the proof's statement was sent, so this is also
 * how much earlier than its workload's start an instance's `startedAt` can be.
 */
const PROOF_FRESH_MS = 500;
/** The first pause before asking again when the database could not be reached, doubling. */
const RETRY_MS = 100;
const RETRY_MAX_MS = 1_000;

/**
 * In a cluster a stop can reach an instance's row while its daemon cannot hear (cut off the
 * database, reconnecting): a workload must not begin a row whose stop was acknowledged. So an
 * attempt begins only on a proof from the database that its row had no stop: the claim that
 * took it when that was a moment ago (the usual case: claimed rows start at once), else one
 * statement for every row waiting here, repeated until the database answers. The attempt
 * counts as begun when the proving statement was sent, so a stop kept on the row after that
 * finds it running and is delivered like any other, and one before it is seen.
 */
export class StartGate {
  readonly #o: StartGateOptions;
  /** Held rows waiting for their proof, with what tells their workload to begin. */
  #waiting = new Map<ActiveInstance, () => void>();
  #asking = false;
  readonly #retry: RetryPause;

  constructor(options: StartGateOptions) {
    this.#o = options;
    this.#retry = new RetryPause({
      firstMs: RETRY_MS,
      maxMs: RETRY_MAX_MS,
      onFirstFailure: (error) =>
        options.log.warn(
          { err: error },
          "workloads wait to begin: the store cannot say whether they were stopped",
        ),
      onRecovered: () => options.log.info("workloads may begin again: the store answers"),
    });
  }

  /** Begins the attempt and calls `send` (which tells its workload) once its row is known to have no stop. */
  begin(active: ActiveInstance, send: () => void): void {
    const at = active.checkedAt;
    if (at !== undefined && Date.now() - at <= PROOF_FRESH_MS) {
      this.#o.began(active, at);
      send();
      return;
    }
    this.#waiting.set(active, send);
    this.#ask();
  }

  close(): void {
    this.#retry.close();
    this.#waiting.clear();
  }

  #ask(): void {
    if (this.#asking || this.#retry.waiting || this.#waiting.size === 0) return;
    this.#asking = true;
    const batch = this.#waiting;
    this.#waiting = new Map();
    const sentAt = Date.now();
    const ids = [...batch.keys()].map((active) => active.row.id);
    this.#o.store.startable(this.#o.owner, ids).then(
      (rows) => {
        this.#asking = false;
        this.#retry.succeeded();
        const stopped = rows.filter((row) => row.stopRequested).map((row) => row.id);
        const startable = new Set(rows.filter((row) => !row.stopRequested).map((row) => row.id));
        if (stopped.length > 0) this.#o.stop(stopped);
        for (const [active, send] of batch) {
          // Stopped meanwhile (its event came first).
          if (active.row.status !== "pending" || stopped.includes(active.row.id)) continue;
          if (!startable.has(active.row.id)) {
            // Reaped: this daemon was presumed dead, which its lease renewal is about to learn.
            this.#o.log.warn(
              { instance: active.row.id },
              "a claimed instance is no longer this daemon's: not begun",
            );
            continue;
          }
          active.checkedAt = sentAt;
          this.#o.began(active, sentAt);
          send();
        }
        this.#ask();
      },
      (error: unknown) => {
        this.#asking = false;
        for (const [active, send] of batch) if (!this.#waiting.has(active)) this.#waiting.set(active, send);
        this.#retry.failed(error, () => this.#ask());
      },
    );
  }
}
