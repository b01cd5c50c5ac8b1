import type { Logger } from "pino";
import type { ClusterStore } from "../store/cluster-store.js";
import type { StoredInstance } from "../store/store.js";
import type { DaemonState } from "./daemon-options.js";
import type { InstanceTable } from "./instance-table.js";
import type { WatchHub } from "./watch-hub.js";

export interface ChangeFeedOptions {
  readonly store: ClusterStore;
  /** This daemon's name in the cluster: its own writes it has already. */
  readonly owner: string;
  readonly state: DaemonState;
  readonly log: Logger;
  readonly table: InstanceTable;
  readonly hub: WatchHub;
}

/** How long after its own write a daemon reads the feed past it (one read for many writes). */
const OWN_FETCH_MS = 200;
/** Rows fetched per read of the other daemons' changes. */
const FETCH_PAGE = 1000;
/**
 * How soon, and at most how seldom, a fetch tries again while a change it was told of is not yet
 * readable: the store shows a change once every older transaction has ended, and one that ends
 * without an event of its own (a heartbeat, another application's write) wakes nobody.
 */
const RETRY_MIN_MS = 2;
const RETRY_MAX_MS = 100;

/**
 * What the other daemons of a cluster change, passed on to this daemon's watchers in sequence
 * order: rows a `changed` event carries at once, others read from the store once final. It also
 * keeps the watchers' resume point: the highest sequence passed on, never past what was read.
 */
export class ChangeFeed {
  readonly #o: ChangeFeedOptions;
  #fetching: Promise<void> | undefined;
  #fetchAgain = false;
  /** The highest sequence fetched from the store and passed to watchers. */
  #fetched = 0;
  /** The highest sequence a `changed` event announced. */
  #announced = 0;
  /** Everything up to this sequence is known to be read (it was final before the last read). */
  #settled = 0;
  /** Ends the wait between two tries of a fetch, when an event comes. */
  #wake: (() => void) | undefined;
  /** The fetch that moves the feed past this daemon's own writes, when one is due. */
  #ownFetch: NodeJS.Timeout | undefined;
  /**
   * Sequences this daemon saved (or an event carried) and already broadcast, so a fetch skips
   * their rows (one save's rows share one sequence).
   */
  readonly #ownSequences = new Set<number>();

  constructor(options: ChangeFeedOptions) {
    this.#o = options;
  }

  /** The highest sequence a watcher may be told it has everything up to. */
  get fetched(): number {
    return this.#fetched;
  }

  /** Starts at the store's final sequence: what came before, a watcher reads from the store. */
  startAt(sequence: number): void {
    this.#fetched = sequence;
  }

  /** Rows of sequence `sequence` this daemon wrote and broadcast itself: a fetch skips them. */
  own(sequence: number): void {
    this.#ownSequences.add(sequence);
  }

  /** A `changed` event: rows `by` wrote under `sequence`, with the rows when the event carries them. */
  changed(sequence: number, by: string | undefined, rows: readonly StoredInstance[] | undefined): void {
    const { hub } = this.#o;
    // Nothing to read now when this daemon wrote it, or nobody here watches.
    if (by === this.#o.owner || hub.idle) this.#fetchOwnLater();
    else if (rows !== undefined) {
      // The event carries every row of its transaction: on to the watchers at once (as this
      // daemon's own rows are, ahead of the feed); the feed skips that sequence later.
      this.#ownSequences.add(sequence);
      hub.broadcast(rows);
      this.#fetchOwnLater();
    } else {
      this.#announced = Math.max(this.#announced, sequence);
      this.#fetchChanges();
    }
  }

  close(): void {
    clearTimeout(this.#ownFetch);
  }

  /**
   * This daemon's own write was announced: it has its rows already, so nothing needs reading now.
   * A fetch a little later moves the feed past them (the watchers' resume point, and the
   * sequences to skip), one for many writes.
   */
  #fetchOwnLater(): void {
    if (this.#ownFetch !== undefined) return;
    this.#ownFetch = setTimeout(() => {
      this.#ownFetch = undefined;
      if (this.#o.state.stopped) return;
      if (!this.#o.hub.idle || this.#fetching !== undefined) {
        this.#fetchChanges();
        return;
      }
      // Nobody here watches: move past what is final without reading it. Whoever starts watching
      // after this starts from here; whoever started meanwhile gets a real read.
      this.#o.store.currentSequence().then(
        (final) => {
          if (!this.#o.hub.idle || this.#fetching !== undefined) this.#fetchChanges();
          else this.#skipTo(final);
        },
        (error) => this.#o.log.warn({ err: error }, "could not read the store's final sequence"),
      );
    }, OWN_FETCH_MS);
    this.#ownFetch.unref();
  }

  /** Moves the feed to `sequence` without reading: nobody here watches what it passes. */
  #skipTo(sequence: number): void {
    if (sequence <= this.#fetched) return;
    this.#fetched = sequence;
    this.#settled = Math.max(this.#settled, sequence);
    this.#forgetOwnUpTo(sequence);
  }

  /** The feed has passed these: no read will meet their rows again. */
  #forgetOwnUpTo(sequence: number): void {
    for (const own of this.#ownSequences) if (own <= sequence) this.#ownSequences.delete(own);
  }

  /**
   * Passes what other daemons saved on to this daemon's watchers, in sequence order. The store
   * shows only final changes; while an announced one is not yet final, this tries again (sooner
   * when another event comes), until it was read or is final.
   */
  #fetchChanges(): void {
    if (this.#fetching !== undefined) {
      this.#fetchAgain = true;
      this.#wake?.();
      return;
    }
    this.#fetching = (async () => {
      let delay = RETRY_MIN_MS;
      for (;;) {
        do {
          this.#fetchAgain = false;
          await this.#readChanges();
        } while (this.#fetchAgain);
        if (this.#o.state.stopped || this.#announced <= Math.max(this.#fetched, this.#settled)) return;
        // Read once more when it is final now: its rows may have changed again since (then they
        // come with that later change), but nothing up to `final` is missed.
        const final = await this.#o.store.currentSequence();
        if (final >= this.#announced) {
          this.#settled = final;
          continue;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          timer.unref();
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = undefined;
        if (this.#o.state.stopped) return;
        delay = Math.min(RETRY_MAX_MS, delay * 2);
      }
    })()
      .catch((error) => this.#o.log.warn({ err: error }, "could not fetch changes from the store"))
      .finally(() => {
        this.#fetching = undefined;
      });
  }

  /** Reads every final change after `#fetched`, page by page, and broadcasts the others' rows. */
  async #readChanges(): Promise<void> {
    const { table, hub } = this.#o;
    for (;;) {
      const rows = await this.#o.store.changesSinceAll(this.#fetched, FETCH_PAGE);
      const theirs: StoredInstance[] = [];
      for (const row of rows) {
        if (this.#ownSequences.has(row.sequence)) continue;
        theirs.push(table.get(row.id)?.row ?? row);
      }
      const last = rows.at(-1);
      if (last !== undefined) this.#fetched = last.sequence;
      this.#forgetOwnUpTo(this.#fetched);
      if (theirs.length > 0) hub.broadcast(theirs);
      if (rows.length < FETCH_PAGE) return;
    }
  }
}
