import type { Logger } from "pino";
import { isTerminalStatus } from "../../sdk/task-status.js";
import type { Store, StoredDefinition, StoredInstance } from "../store/store.js";
import { type ActiveInstance, activeInstance } from "./active-instance.js";
import type { DaemonMetrics } from "./daemon-metrics.js";
import type { DaemonState } from "./daemon-options.js";
import { RetryPause } from "../retry-pause.js";

/** How rows are numbered and written: by this daemon alone, or by a store that several share. */
export interface RowWriter {
  /** The sequence and position a new row is written with; 0 where the store assigns them. */
  numberNew(): { sequence: number; position: number };
  /** The sequence a changed row is written with. */
  numberChange(row: StoredInstance): number;
  /** Writes a batch atomically and durably; resolves the rows as stored. */
  write(
    rows: readonly StoredInstance[],
    definitions: readonly StoredDefinition[],
  ): Promise<readonly StoredInstance[]>;
}

export interface InstanceTableOptions {
  readonly store: Store;
  readonly writer: RowWriter;
  readonly state: DaemonState;
  readonly log: Logger;
  /** Every batch as stored, in the order written. */
  readonly onSaved: (rows: readonly StoredInstance[]) => void;
  /** Told of every status change and store write, when the daemon serves metrics. */
  readonly metrics?: DaemonMetrics | undefined;
}

type FlushWaiter = {
  resolve: (stored: ReadonlyMap<string, StoredInstance>) => void;
  reject: (error: unknown) => void;
};

/** The first pause before a failed write is tried again, doubling up to the next. */
const RETRY_WRITE_MS = 100;
const RETRY_WRITE_MAX_MS = 1_000;

/**
 * The instances this daemon holds, and every change not yet in the store. Changes made in one
 * event-loop turn are written as one batch; a failed write is retried with whatever changed
 * since, and nobody waiting on it is told it is durable until it is.
 */
export class InstanceTable {
  readonly #o: InstanceTableOptions;
  readonly #active = new Map<string, ActiveInstance>();
  readonly #dirty = new Map<string, StoredInstance>();
  readonly #dirtyDefinitions = new Map<string, StoredDefinition>();
  readonly #knownDefinitions = new Set<string>();
  #flushScheduled = false;
  #flushing: Promise<void> | undefined;
  #flushWaiters: FlushWaiter[] = [];
  /** After a failed write: nothing is written until its pause is over (changes meanwhile join the retry). */
  readonly #retry: RetryPause;

  constructor(options: InstanceTableOptions) {
    this.#o = options;
    this.#retry = new RetryPause({
      firstMs: RETRY_WRITE_MS,
      maxMs: RETRY_WRITE_MAX_MS,
      onFirstFailure: (error) => options.log.error({ err: error }, "store write failed; retrying"),
      onRecovered: (failedWrites) => options.log.info({ failedWrites }, "store writes succeed again"),
    });
  }

  get(id: string): ActiveInstance | undefined {
    return this.#active.get(id);
  }

  actives(): IterableIterator<ActiveInstance> {
    return this.#active.values();
  }

  /** Whether changes wait for a write that is due (a flush is scheduled or will follow the one in flight). */
  get writeDue(): boolean {
    return this.#dirty.size > 0 || this.#dirtyDefinitions.size > 0;
  }

  /** The newest row this daemon has without reading the store: held, or written but not yet stored. */
  known(id: string): StoredInstance | undefined {
    return this.#active.get(id)?.row ?? this.#dirty.get(id);
  }

  async latest(id: string): Promise<StoredInstance | undefined> {
    return this.known(id) ?? (await this.#o.store.getMany([id]))[0];
  }

  /** Takes a row into this daemon's hands: it runs here. */
  hold(row: StoredInstance): ActiveInstance {
    const active = activeInstance(row);
    this.#active.set(row.id, active);
    return active;
  }

  /** A new row, written with the next batch, with its task's definition. */
  insert(row: StoredInstance): void {
    this.#dirty.set(row.id, row);
    const key = definitionKey(row.deploymentId, row.taskName, row.module);
    if (!this.#knownDefinitions.has(key)) {
      this.#knownDefinitions.add(key);
      this.#dirtyDefinitions.set(key, {
        deploymentId: row.deploymentId,
        id: row.taskId,
        name: row.taskName,
        module: row.module,
      });
    }
  }

  /** Records a change of a held instance; nothing once it has ended or the daemon has stopped. */
  change(active: ActiveInstance, change: Partial<StoredInstance>): void {
    if (this.#o.state.stopped || isTerminalStatus(active.row.status)) return;
    const metrics = this.#o.metrics;
    if (metrics !== undefined && change.status !== undefined && change.status !== active.row.status) {
      metrics.statusChanged(active.row, change.status, Date.now());
    }
    const next: StoredInstance = { ...active.row, ...change, revision: active.row.revision + 1 };
    const row: StoredInstance = { ...next, sequence: this.#o.writer.numberChange(next) };
    active.row = row;
    this.#dirty.set(row.id, row);
    this.#scheduleFlush();
  }

  /** Resolves once everything changed so far is in the store, with the rows as stored. */
  durable(): Promise<ReadonlyMap<string, StoredInstance>> {
    return new Promise((resolveWait, reject) => {
      this.#flushWaiters.push({ resolve: resolveWait, reject });
      this.#scheduleFlush();
    });
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#retry.waiting) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      void this.flush();
    });
  }

  /** Writes what changed; resolves when it (or a retry of it) is stored. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#dirty.size === 0 && this.#dirtyDefinitions.size === 0) {
      const waiters = this.#flushWaiters;
      this.#flushWaiters = [];
      for (const waiter of waiters) waiter.resolve(new Map());
      return;
    }
    const rows = [...this.#dirty.values()];
    const definitions = [...this.#dirtyDefinitions.values()];
    const waiters = this.#flushWaiters;
    this.#dirty.clear();
    this.#dirtyDefinitions.clear();
    this.#flushWaiters = [];
    this.#flushing = this.#write(rows, definitions, waiters);
    try {
      await this.#flushing;
    } finally {
      this.#flushing = undefined;
    }
    if (this.#dirty.size > 0 || this.#flushWaiters.length > 0) this.#scheduleFlush();
  }

  async #write(
    rows: StoredInstance[],
    definitions: StoredDefinition[],
    waiters: FlushWaiter[],
  ): Promise<void> {
    let stored: readonly StoredInstance[];
    const metrics = this.#o.metrics;
    const began = metrics === undefined ? 0 : performance.now();
    try {
      stored = await this.#o.writer.write(rows, definitions);
      metrics?.storeCommitted((performance.now() - began) / 1000);
    } catch (error) {
      metrics?.storeCommitFailed();
      for (const row of rows) if (!this.#dirty.has(row.id)) this.#dirty.set(row.id, row);
      for (const definition of definitions) {
        this.#dirtyDefinitions.set(
          definitionKey(definition.deploymentId, definition.name, definition.module),
          definition,
        );
      }
      this.#flushWaiters.push(...waiters);
      this.#retry.failed(error, () => this.#scheduleFlush());
      return;
    }
    this.#retry.succeeded();
    const byId = new Map<string, StoredInstance>();
    for (const row of stored) {
      byId.set(row.id, row);
      const active = this.#active.get(row.id);
      if (active && active.row.revision === row.revision) {
        // Ended, or given back to the shared store to wait for its next attempt.
        if (isTerminalStatus(row.status) || active.released) this.#active.delete(row.id);
        else if (active.row.sequence !== row.sequence) active.row = { ...active.row, sequence: row.sequence };
      }
    }
    this.#o.onSaved(stored);
    for (const waiter of waiters) waiter.resolve(byId);
  }
}

function definitionKey(deploymentId: string, name: string, module: string): string {
  return `${deploymentId}\u0000${name}\u0000${module}`;
}
