/**
 * Pauses the harness's load, faults and rogue for a quiet moment (a lull, when the daemon is
 * measured at rest), and keeps the run's schedule on a clock that only runs while the gate is
 * open: a lull delays what comes after it and takes nothing from the load.
 */
export class LoadGate {
  readonly #origin: number;
  #pausedMs = 0;
  #closedAt: number | undefined;
  #opened: Promise<void> = Promise.resolve();
  #open: () => void = () => {};

  /** `origin`: the moment load time 0 stands for (epoch ms). */
  constructor(origin: number) {
    this.#origin = origin;
  }

  /** Load time: milliseconds since the origin, lulls left out. */
  elapsed(): number {
    const now = Date.now();
    const paused = this.#pausedMs + (this.#closedAt === undefined ? 0 : now - this.#closedAt);
    return now - this.#origin - paused;
  }

  close(): void {
    if (this.#closedAt !== undefined) return;
    this.#closedAt = Date.now();
    this.#opened = new Promise((resolve) => {
      this.#open = resolve;
    });
  }

  open(): void {
    if (this.#closedAt === undefined) return;
    this.#pausedMs += Date.now() - this.#closedAt;
    this.#closedAt = undefined;
    this.#open();
  }

  /** Resolves at once while open, else when the gate opens. */
  pass(): Promise<void> {
    return this.#opened;
  }

  /** Resolves when load time reaches `at` with the gate open. */
  async until(at: number): Promise<void> {
    for (;;) {
      await this.pass();
      const left = at - this.elapsed();
      if (left <= 0) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, 250)));
    }
  }
}
