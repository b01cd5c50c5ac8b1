import { doublingDelay } from "./doubling-delay.js";

export interface RetryPauseOptions {
  /** The pause after the first failure of an outage; it doubles with each, up to `maxMs`. */
  readonly firstMs: number;
  readonly maxMs: number;
  /** Says the first failure of an outage (the others are not said). */
  readonly onFirstFailure: (error: unknown) => void;
  /** Says that it works again, after `failures` failures in a row. */
  readonly onRecovered: (failures: number) => void;
}

/**
 * How the daemon's loops that need the store meet an outage: after a failure they wait out a
 * growing pause before trying again (never a busy loop), and say the outage once when it begins
 * and once when it ends (never a log line per try).
 */
export class RetryPause {
  readonly #o: RetryPauseOptions;
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: RetryPauseOptions) {
    this.#o = options;
  }

  /** Whether a pause is running: whoever would try now waits for its retry instead. */
  get waiting(): boolean {
    return this.#timer !== undefined;
  }

  /** A try failed: `retry` runs once the pause is over (one pause at a time). */
  failed(error: unknown, retry: () => void): void {
    if (this.#failures++ === 0) this.#o.onFirstFailure(error);
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        retry();
      },
      doublingDelay(this.#failures, this.#o.firstMs, this.#o.maxMs),
    );
    this.#timer.unref();
  }

  /** A try worked: after an outage, it is said once. */
  succeeded(): void {
    if (this.#failures === 0) return;
    this.#o.onRecovered(this.#failures);
    this.#failures = 0;
  }

  /** No retry runs any more (shutdown). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
