import { failures } from "../../sdk/failures.js";
import type { Logger } from "pino";
import type { ClaimedInstance, ClusterEvent, ClusterStore } from "../store/cluster-store.js";
import type { StoredDefinition, StoredInstance } from "../store/store.js";
import type { ActiveInstance } from "./active-instance.js";
import type { CoordinatedParts, Coordinator } from "./coordinator.js";
import type { DaemonMetrics } from "./daemon-metrics.js";
import type { DaemonState } from "./daemon-options.js";
import { ChangeFeed } from "./change-feed.js";
import { StartGate } from "./start-gate.js";
import { RetryPause } from "../retry-pause.js";

export interface ClusterCoordinatorOptions {
  readonly store: ClusterStore;
  /** This daemon's name in the cluster. */
  readonly owner: string;
  readonly leaseMs: number;
  readonly state: DaemonState;
  readonly log: Logger;
  /** The cluster presumed this daemon dead and gave its work to others: it must stop at once. */
  readonly onLostLease: (reason: string) => void;
  readonly metrics?: DaemonMetrics | undefined;
}

/**
 * How often a stop for another daemon's instance is said again until the instance ends, and for
 * how long. Often enough that a daemon that missed it (cut off the database) hears it again soon
 * after it is back, before it starts an instance it held pending: a quarter of the stop grace
 * at its default. Each try is two short statements, and only while a stop is on its way.
 */
const STOP_RETRY_MS = 250;
const STOP_RETRY_FOR_MS = 10 * 60_000;

/** After a claim failed (the database unreachable), the first pause before the next; it doubles up to the most. */
const CLAIM_RETRY_MS = 100;
const CLAIM_RETRY_MAX_MS = 2_000;

/** The shortest heartbeat or reaping interval, whatever the lease. */
const MIN_INTERVAL_MS = 50;

/**
 * A daemon of a cluster: several daemons share one store. The store numbers rows; new instances
 * wait in it until a daemon with room claims them; each daemon holds a lease it renews, and reaps
 * the work of daemons whose lease ran out; changes and stops cross daemons as store events.
 */
export class ClusterCoordinator implements Coordinator {
  readonly #o: ClusterCoordinatorOptions;
  #parts: CoordinatedParts | undefined;
  readonly #gate: StartGate;
  /** It found its lease reaped: it stops, once. */
  #lost = false;
  #claiming = false;
  #claimAgain = false;
  /** The next write claims too (a write was due when room came up): one commit for both. */
  #claimWithWrite = false;
  /** A write that claims is in flight. */
  #claimingInWrite = false;
  /** The last write's claim left room while rows of limited tasks waited: the claim function takes them next. */
  #limitedWaiting = false;
  /** Starting what a claim took (the queue's "drained" then is this daemon's own doing). */
  #starting = false;
  /** After a failed claim (the database unreachable), the next waits out its pause. */
  readonly #claimRetry: RetryPause;
  /** The other daemons' changes, on to this daemon's watchers; made once the parts are attached. */
  #feed: ChangeFeed | undefined;
  readonly #timers: NodeJS.Timeout[] = [];
  /**
   * Since when this daemon has reached the store without a failed heartbeat. It reaps only after
   * a full lease of that: after an outage the others need a renewal of their own before their
   * leases mean anything.
   */
  #reachableSince: number | undefined;
  /** When the last heartbeat succeeded. */
  #heartbeatAt = 0;
  #unsubscribe: (() => void) | undefined;
  /** Stops asked for here of instances other daemons hold, asked again until they end. */
  readonly #stopping = new Map<string, NodeJS.Timeout>();
  #wakeTimer: NodeJS.Timeout | undefined;
  #wakeTimerAt = 0;

  constructor(options: ClusterCoordinatorOptions) {
    this.#o = options;
    this.#gate = new StartGate({
      store: options.store,
      owner: options.owner,
      log: options.log,
      began: (active, at) => this.#partsOf().queue.began(active, at),
      stop: (ids) => this.#stopAll(ids),
    });
    this.#claimRetry = new RetryPause({
      firstMs: CLAIM_RETRY_MS,
      maxMs: CLAIM_RETRY_MAX_MS,
      onFirstFailure: (error) => options.log.warn({ err: error }, "could not claim pending instances"),
      onRecovered: (failures) => options.log.info({ failures }, "claiming pending instances again"),
    });
  }

  attach(parts: CoordinatedParts): void {
    this.#parts = parts;
    const { store, owner, state, log } = this.#o;
    this.#feed = new ChangeFeed({ store, owner, state, log, table: parts.table, hub: parts.hub });
  }

  numberNew(): { sequence: number; position: number } {
    // The shared store numbers rows itself.
    return { sequence: 0, position: 0 };
  }

  numberChange(row: StoredInstance): number {
    return row.sequence;
  }

  async write(
    rows: readonly StoredInstance[],
    definitions: readonly StoredDefinition[],
  ): Promise<readonly StoredInstance[]> {
    const { state, owner, store } = this.#o;
    let limit = 0;
    if (this.#claimWithWrite) {
      this.#claimWithWrite = false;
      if (this.#claiming || this.#claimRetry.waiting) this.#claimAgain = true;
      else if (state.accepting && state.listening && !state.stopped)
        limit = Math.max(0, this.#partsOf().queue.room());
    }
    if (limit > 0) this.#claimingInWrite = true;
    const sentAt = Date.now();
    let saved: Awaited<ReturnType<ClusterStore["saveAndClaim"]>>;
    try {
      saved = await store.saveAndClaim(rows, definitions, { owner, limit });
    } catch (error) {
      if (limit > 0) {
        this.#claimingInWrite = false;
        this.#claimFailed(error);
      }
      throw error;
    }
    if (saved.fenced.length > 0) {
      // The others reaped this daemon (a stall or a cut longer than its lease): what it would
      // write now contradicts what they stored. It stops, as at a refused lease renewal.
      this.#o.log.warn(
        { instances: saved.fenced.length },
        "the store refused changes: this daemon's lease was reaped",
      );
      queueMicrotask(() => this.#lostLease());
    }
    for (const row of saved.stored) this.#feedOf().own(row.sequence);
    // A stop this daemon missed (its event lost in a cut or a reconnect) shows on the rows it
    // writes: its start, its progress. Stopped once the caller has taken the rows in.
    if (saved.stopsRequested.length > 0) queueMicrotask(() => this.#stopAll(saved.stopsRequested));
    if (limit > 0) {
      this.#claimingInWrite = false;
      this.#took(saved.claimed, sentAt);
      this.#claimsWork();
      // Room is left and more may wait (a full claim), or only rows of limited tasks do, which
      // the store's claim function takes; or room came up meanwhile.
      this.#limitedWaiting = saved.limitedWaiting && saved.claimed.length < limit;
      if (saved.claimed.length === limit || this.#limitedWaiting || this.#claimAgain) {
        this.#claimAgain = false;
        // After the rows are saved and broadcast (the caller does that next).
        queueMicrotask(() => this.drained());
      }
    }
    return saved.stored;
  }

  /**
   * Rows this daemon claimed: held and queued; one whose stop was asked for meanwhile is
   * cancelled before it can start. Watchers are not told: a claim changes nothing they see (the
   * row is still pending), and its start follows at once.
   */
  #took(rows: readonly ClaimedInstance[], sentAt: number): void {
    if (rows.length === 0) return;
    const { table, queue } = this.#partsOf();
    const stopped: ActiveInstance[] = [];
    for (const row of rows) {
      const { stopRequested, ...plain } = row;
      const active = table.hold(plain);
      // The claim saw the row's stop, or a stop kept after it finds the row claimed: proof
      // enough for its workload to begin now (see StartGate).
      active.checkedAt = sentAt;
      queue.enqueue(row.id);
      this.#feedOf().own(row.sequence);
      if (stopRequested === true) stopped.push(active);
    }
    for (const active of stopped) queue.stop(active);
    // The queue says it ran dry once it started them: that is no reason to claim again.
    this.#starting = true;
    try {
      queue.pump();
    } finally {
      this.#starting = false;
    }
  }

  /** A claim failed (the database unreachable): said once per outage, tried again after a growing pause. */
  #claimFailed(error: unknown): void {
    this.#claimAgain = true;
    this.#claimRetry.failed(error, () => this.drained());
  }

  /**
   * A daemon of a cluster starts afresh under a new name; what an earlier run held is reaped by
   * the others once its lease runs out.
   */
  async recover(): Promise<void> {
    const final = await this.#o.store.currentSequence();
    this.#feedOf().startAt(final);
    this.#partsOf().hub.startAt(final);
    await this.#o.store.heartbeat(this.#o.owner, this.#o.leaseMs);
    this.#reachableSince = this.#heartbeatAt = Date.now();
  }

  start(): void {
    const { store, leaseMs: lease, log, owner } = this.#o;
    this.#unsubscribe = store.subscribe((event) => this.#onEvent(event));
    const beat = setInterval(
      () => {
        store.heartbeat(owner, lease).then(
          (alive) => {
            this.#heartbeatAt = Date.now();
            this.#reachableSince ??= this.#heartbeatAt;
            this.#o.metrics?.leaseRenewal(alive ? "renewed" : "lost");
            if (!alive) this.#lostLease();
            else {
              this.drained();
              this.#applyRequestedStops();
            }
          },
          (error) => {
            this.#reachableSince = undefined;
            this.#o.metrics?.leaseRenewal("failed");
            log.warn({ err: error }, "lease renewal failed; retrying");
          },
        );
      },
      Math.max(MIN_INTERVAL_MS, Math.floor(lease / 3)),
    );
    const reap = setInterval(
      () => {
        if (!this.#mayReap()) return;
        store
          .reap((lost) => failures.daemonLost(lost, lease))
          .then(
            (rows) => {
              this.#o.metrics?.endedInStore(rows);
              if (rows.length > 0) log.warn({ instances: rows.length }, "reaped the work of lost daemons");
            },
            (error) => log.warn({ err: error }, "reaping failed; retrying"),
          );
      },
      Math.max(MIN_INTERVAL_MS, Math.floor(lease / 2)),
    );
    beat.unref();
    reap.unref();
    this.#timers.push(beat, reap);
    log.info({ owner, leaseMs: lease }, "joined the cluster");
  }

  close(): void {
    for (const timer of this.#timers) clearInterval(timer);
    for (const timer of this.#stopping.values()) clearInterval(timer);
    this.#stopping.clear();
    clearTimeout(this.#wakeTimer);
    this.#claimRetry.close();
    this.#feed?.close();
    this.#unsubscribe?.();
    this.#gate.close();
  }

  begin(active: ActiveInstance, send: () => void): void {
    this.#gate.begin(active, send);
  }

  /** Claims at `at` (epoch ms), when a delayed instance or a retry becomes ready. */
  #wakeAt(at: number): void {
    const now = Date.now();
    if (at <= now) {
      this.drained();
      return;
    }
    if (this.#wakeTimer !== undefined && this.#wakeTimerAt <= at && this.#wakeTimerAt > now) return;
    clearTimeout(this.#wakeTimer);
    this.#wakeTimerAt = at;
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = undefined;
      this.drained();
      // More may wait behind it.
      this.#o.store.nextReadyAt().then(
        (next) => {
          if (next !== undefined) this.#wakeAt(next);
        },
        () => undefined,
      );
    }, at - now);
    this.#wakeTimer.unref();
  }

  resumeBound(): number {
    return this.#feedOf().fetched;
  }

  created(): void {
    // It waits in the store until a daemon with room claims it.
  }

  saved(): void {
    this.drained();
  }

  /** Claims unowned pending instances while this daemon has room. */
  drained(): void {
    const { state, store, owner } = this.#o;
    if (!state.accepting || !state.listening || state.stopped || this.#starting) return;
    if (this.#claiming || this.#claimingInWrite || this.#claimRetry.waiting) {
      this.#claimAgain = true;
      return;
    }
    const { table, queue } = this.#partsOf();
    const room = queue.room();
    if (room <= 0) return;
    if (table.writeDue && !this.#limitedWaiting) {
      // An end (or a start) is about to be written: its statement claims too (not rows of tasks
      // with a concurrency limit: when those wait, the claim function below takes them).
      this.#claimWithWrite = true;
      return;
    }
    this.#claiming = true;
    this.#claimAgain = false;
    this.#limitedWaiting = false;
    const sentAt = Date.now();
    store
      .claim(owner, room)
      .then((rows) => {
        this.#took(rows, sentAt);
        if (rows.length === room) this.#claimAgain = true;
        this.#claimsWork();
      })
      .catch((error) => this.#claimFailed(error))
      .finally(() => {
        this.#claiming = false;
        // Claim again only for a reason: the claim was full, or room or work came meanwhile. (It
        // used to pump the queue here, whose "ran dry" claimed again at once: an idle daemon
        // claimed in a loop, over a thousand statements a second.)
        if (this.#claimAgain && this.#claimRetry === undefined) this.drained();
      });
  }

  /** A claim succeeded: after an outage, say so once. */
  #claimsWork(): void {
    this.#claimRetry.succeeded();
  }

  /**
   * Cancels an unclaimed pending row here, or asks the daemon that holds it; then keeps asking,
   * every {@link STOP_RETRY_MS}, until the instance has ended. A stop travels as an event, and the daemon that
   * holds the instance may not hear it: its event connection down (a cut, a database restart),
   * the row claimed but not yet in its hands, or the daemon dead and its rows given to others.
   */
  async stopElsewhere(row: StoredInstance): Promise<void> {
    if (await this.#stopOnce(row.id, row.status === "pending" && row.owner === "")) return;
    if (this.#stopping.has(row.id)) return;
    const until = Date.now() + STOP_RETRY_FOR_MS;
    const timer = setInterval(() => {
      if (this.#o.state.stopped || Date.now() > until) {
        clearInterval(timer);
        this.#stopping.delete(row.id);
        return;
      }
      this.#stopOnce(row.id, true).then(
        (ended) => {
          if (ended) {
            clearInterval(timer);
            this.#stopping.delete(row.id);
          }
        },
        (error) =>
          this.#o.log.warn({ err: error, instance: row.id }, "could not pass a stop on; trying again"),
      );
    }, STOP_RETRY_MS);
    timer.unref();
    this.#stopping.set(row.id, timer);
  }

  stoppedHere(active: ActiveInstance): void {
    // Running (a pending one ends cancelled at once, and its end is written): kept on the row in
    // case this daemon dies before the workload ends; reaping then cancels it.
    if (active.row.status !== "running") return;
    this.#o.store
      .requestStop(active.row.id)
      .catch((error) =>
        this.#o.log.warn({ err: error, instance: active.row.id }, "could not keep a stop on its row"),
      );
  }

  /** One try to stop `id` wherever it is; resolves whether it has ended. */
  async #stopOnce(id: string, mayBeUnclaimed: boolean): Promise<boolean> {
    const { store, owner } = this.#o;
    const { table } = this.#partsOf();
    if (mayBeUnclaimed) {
      await table.durable();
      const cancelled = await store.cancelPending(id);
      if (cancelled !== undefined) {
        this.#o.metrics?.endedInStore([cancelled]);
        return true;
      }
    }
    // Kept on the row and told to its owner in one statement: an owner that misses the event
    // finds the stop when it claims, renews its lease or reconnects; reaping cancels it.
    const marked = await store.requestStop(id);
    if (marked === undefined) return true;
    if (marked.owner === owner) this.#stopAll([id]);
    return false;
  }

  /** Stops what this daemon holds whose stop was asked for while it may not have heard. */
  #applyRequestedStops(): void {
    this.#o.store.stopsRequested(this.#o.owner).then(
      (ids) => this.#stopAll(ids),
      (error) => this.#o.log.warn({ err: error }, "could not read the stops asked of this daemon"),
    );
  }

  /** Stops the instances of `ids` this daemon holds, unless already stopped. */
  #stopAll(ids: readonly string[]): void {
    const { table, queue } = this.#partsOf();
    for (const id of ids) {
      const active = table.get(id);
      if (active !== undefined && !active.userStopped) queue.stop(active);
    }
  }

  /**
   * Whether this daemon may judge the others' leases: it has reached the store for a full lease,
   * and its own last renewal is recent (one that hangs on a cut connection is an outage too).
   */
  #mayReap(): boolean {
    const now = Date.now();
    if (now - this.#heartbeatAt > (this.#o.leaseMs * 2) / 3) this.#reachableSince = undefined;
    return this.#reachableSince !== undefined && now - this.#reachableSince >= this.#o.leaseMs;
  }

  #lostLease(): void {
    if (this.#lost) return;
    this.#lost = true;
    const reason = `daemon ${this.#o.owner} lost its lease: the cluster presumed it dead and gave its work to others`;
    this.#o.log.fatal({ owner: this.#o.owner }, reason);
    this.#o.onLostLease(reason);
  }

  #onEvent(event: ClusterEvent): void {
    if (this.#o.state.stopped) return;
    if (event.kind === "pending") {
      if (event.at !== undefined) this.#wakeAt(event.at);
      else this.drained();
      if (event.resync) {
        // Back after a break: stops sent meanwhile were missed.
        this.#applyRequestedStops();
        this.#o.store.nextReadyAt().then(
          (at) => {
            if (at !== undefined) this.#wakeAt(at);
          },
          (error) => this.#o.log.warn({ err: error }, "could not read when delayed instances are due"),
        );
      }
    } else if (event.kind === "changed") {
      this.#feedOf().changed(event.sequence, event.by, event.rows);
    } else if (event.kind === "stop" && event.owner === this.#o.owner) {
      this.#stopAll([event.instanceId]);
    }
  }

  #feedOf(): ChangeFeed {
    if (this.#feed === undefined) throw new Error("the coordinator is not attached");
    return this.#feed;
  }

  #partsOf(): CoordinatedParts {
    if (this.#parts === undefined) throw new Error("the coordinator is not attached");
    return this.#parts;
  }
}
