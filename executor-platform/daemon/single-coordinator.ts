import type { Logger } from "pino";
import type { Store, StoredDefinition, StoredInstance } from "../store/store.js";
import type { ActiveInstance } from "./active-instance.js";
import type { CoordinatedParts, Coordinator } from "./coordinator.js";

/**
 * A daemon that has its store to itself: it numbers rows itself, runs everything submitted to
 * it, and takes up what its last run left unfinished.
 */
export class SingleCoordinator implements Coordinator {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #reconnectWindowMs: number;
  #parts: CoordinatedParts | undefined;
  #sequence = 0;
  #position = 0;

  constructor(store: Store, log: Logger, reconnectWindowMs: number) {
    this.#store = store;
    this.#log = log;
    this.#reconnectWindowMs = reconnectWindowMs;
  }

  attach(parts: CoordinatedParts): void {
    this.#parts = parts;
  }

  numberNew(): { sequence: number; position: number } {
    return { sequence: ++this.#sequence, position: ++this.#position };
  }

  numberChange(): number {
    return ++this.#sequence;
  }

  async write(
    rows: readonly StoredInstance[],
    definitions: readonly StoredDefinition[],
  ): Promise<readonly StoredInstance[]> {
    await this.#store.save(rows, definitions);
    return rows;
  }

  /** Pending instances run again; running ones wait for their workload to reattach. */
  async recover(): Promise<void> {
    const { table, queue, hub } = this.#partsOf();
    const counters = await this.#store.counters();
    this.#sequence = counters.sequence;
    this.#position = counters.position;
    hub.startAt(counters.sequence);
    const unfinished = await this.#store.unfinished();
    let orphans = 0;
    for (const row of unfinished) {
      const active = table.hold(row);
      if (row.status === "pending") {
        queue.enqueue(row.id);
      } else {
        orphans++;
        queue.holdOrphan(active, this.#reconnectWindowMs);
      }
    }
    if (unfinished.length > 0) {
      this.#log.info(
        { pending: unfinished.length - orphans, running: orphans },
        "recovered unfinished instances",
      );
    }
  }

  start(): void {}

  close(): void {}

  resumeBound(): number {
    return Number.POSITIVE_INFINITY;
  }

  created(row: StoredInstance): void {
    this.#partsOf().table.hold(row);
  }

  saved(ids: readonly string[]): void {
    const { queue } = this.#partsOf();
    for (const id of ids) queue.enqueue(id);
    queue.pump();
  }

  drained(): void {}

  async stopElsewhere(): Promise<void> {
    // Every unfinished instance of a lone daemon is held by it.
  }

  stoppedHere(): void {
    // Its workload reattaches to the daemon started again, which still holds the stop's end.
  }

  begin(active: ActiveInstance, send: () => void): void {
    // Every stop comes through this daemon: none can be waiting anywhere else.
    this.#partsOf().queue.began(active);
    send();
  }

  #partsOf(): CoordinatedParts {
    if (this.#parts === undefined) throw new Error("the coordinator is not attached");
    return this.#parts;
  }
}
