import { Client, type ClientConfig } from "pg";
import type { ClusterEvent } from "../cluster-store.js";
import type { StoredInstance } from "../store.js";
import type { PostgresStoreLogger } from "./postgres-store.js";
import { CHANNEL, LISTEN, PING, SELECT_SEQUENCE } from "./statements.js";
import { errorMessage } from "./store-error.js";
import { doublingDelay } from "../../doubling-delay.js";

/**
 * The event connection is tried again after 100 ms, doubling to at most 500 ms: while it is down
 * this daemon hears no stop, so it comes back soon after the database does (one connection
 * attempt per daemon every half second is nothing to a database that is up).
 */
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 500;
/** How often the LISTEN connection is pinged, to notice a connection that died silently. */
const PING_INTERVAL_MS = 15_000;
const PING_TIMEOUT_MS = 10_000;

/**
 * The LISTEN connection of one store, shared by its subscribers: connects on the first, ends
 * with the last, reconnects with backoff when the connection drops, and emits the catch-up
 * events each time it starts listening.
 */
export class ClusterEventListener {
  readonly #config: ClientConfig;
  readonly #label: string;
  readonly #offset: number;
  readonly #logger: PostgresStoreLogger | undefined;
  readonly #listeners = new Set<(event: ClusterEvent) => void>();
  #client: Client | undefined;
  #active = false;
  #listening = false;
  #closed = false;
  #failures = 0;
  #retry: NodeJS.Timeout | undefined;
  #ping: NodeJS.Timeout | undefined;
  #waiters: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];

  constructor(config: ClientConfig, label: string, offset: number, logger: PostgresStoreLogger | undefined) {
    this.#config = config;
    this.#label = label;
    this.#offset = offset;
    this.#logger = logger;
  }

  add(listener: (event: ClusterEvent) => void): void {
    this.#listeners.add(listener);
    if (!this.#active) {
      this.#active = true;
      void this.#connect();
    }
  }

  remove(listener: (event: ClusterEvent) => void): void {
    this.#listeners.delete(listener);
    if (this.#listeners.size === 0) this.#stop();
  }

  listening(): Promise<void> {
    if (this.#listening) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#stop();
    const waiters = this.#waiters.splice(0);
    for (const waiter of waiters) waiter.reject(new Error(`the task store ${this.#label} is closed`));
  }

  #stop(): void {
    this.#active = false;
    this.#listening = false;
    this.#failures = 0;
    clearTimeout(this.#retry);
    clearInterval(this.#ping);
    this.#retry = undefined;
    this.#ping = undefined;
    const client = this.#client;
    this.#client = undefined;
    client?.end().catch(() => undefined);
  }

  async #connect(): Promise<void> {
    this.#retry = undefined;
    if (!this.#active || this.#closed) return;
    const client = new Client(this.#config);
    this.#client = client;
    client.on("error", (error) => this.#lost(client, error));
    client.on("end", () => this.#lost(client, new Error("the connection ended")));
    client.on("notification", (message) => {
      if (client !== this.#client || message.channel !== CHANNEL) return;
      const event = decodeEvent(message.payload ?? "");
      if (event === undefined) {
        this.#logger?.warn(
          { store: this.#label, payload: message.payload },
          "ignored a malformed task store event",
        );
        return;
      }
      this.#emit(event);
    });
    try {
      await client.connect();
      await client.query(LISTEN);
      // Read after LISTEN: whatever commits later is notified, whatever was final before is in this.
      const result = await client.query<{ sequence: number }>(SELECT_SEQUENCE, [this.#offset]);
      if (client !== this.#client) return;
      if (this.#failures > 0) {
        this.#logger?.warn({ store: this.#label, attempts: this.#failures }, "task store events reconnected");
      }
      this.#failures = 0;
      this.#listening = true;
      clearInterval(this.#ping);
      this.#ping = setInterval(() => this.#checkAlive(client), PING_INTERVAL_MS);
      this.#ping.unref();
      for (const waiter of this.#waiters.splice(0)) waiter.resolve();
      this.#emit({ kind: "changed", sequence: result.rows[0]?.sequence ?? 0 });
      this.#emit({ kind: "pending", resync: true });
    } catch (error) {
      this.#lost(client, error);
    }
  }

  #checkAlive(client: Client): void {
    if (client !== this.#client) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
    });
    Promise.race([client.query(PING), timeout])
      .catch((error: unknown) => this.#lost(client, error))
      .finally(() => clearTimeout(timer));
  }

  #lost(client: Client, error: unknown): void {
    if (client !== this.#client) return;
    this.#client = undefined;
    this.#listening = false;
    clearInterval(this.#ping);
    this.#ping = undefined;
    client.end().catch(() => undefined);
    if (!this.#active || this.#closed) return;
    this.#failures++;
    const delay = doublingDelay(this.#failures, RECONNECT_MIN_MS, RECONNECT_MAX_MS);
    const jittered = Math.round(delay * (0.75 + Math.random() * 0.5));
    // Once per outage, then every tenth attempt, so a long outage does not flood the log.
    if (this.#failures === 1 || this.#failures % 10 === 0) {
      this.#logger?.warn(
        { store: this.#label, err: errorMessage(error), attempt: this.#failures, retryInMs: jittered },
        "task store events disconnected; reconnecting",
      );
    }
    this.#retry = setTimeout(() => void this.#connect(), jittered);
  }

  #emit(event: ClusterEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch (error) {
        this.#logger?.warn(
          { store: this.#label, err: errorMessage(error), event },
          "a task store event listener threw",
        );
      }
    }
  }
}

/** The NOTIFY payload of `event`. */
export function encodeEvent(event: ClusterEvent): string {
  switch (event.kind) {
    case "changed":
      return JSON.stringify(
        event.by === undefined
          ? { kind: "changed", sequence: event.sequence }
          : { kind: "changed", sequence: event.sequence, by: event.by },
      );
    case "pending":
      return JSON.stringify(event.at === undefined ? { kind: "pending" } : { kind: "pending", at: event.at });
    case "stop":
      return JSON.stringify({ kind: "stop", instanceId: event.instanceId, owner: event.owner });
    case "schedules":
      return JSON.stringify({ kind: "schedules" });
    default:
      throw new Error(`unknown cluster event ${JSON.stringify(event)}`);
  }
}

/** The event a NOTIFY payload carries; undefined when it is not one of ours. */
function decodeEvent(payload: string): ClusterEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const event = value as Record<string, unknown>;
  if (event.kind === "changed" && typeof event.sequence === "number") {
    if (typeof event.by !== "string") return { kind: "changed", sequence: event.sequence };
    const rows = pushedRows(event.rows, event.sequence);
    return rows === undefined
      ? { kind: "changed", sequence: event.sequence, by: event.by }
      : { kind: "changed", sequence: event.sequence, by: event.by, rows };
  }
  if (event.kind === "pending") {
    return typeof event.at === "number" ? { kind: "pending", at: event.at } : { kind: "pending" };
  }
  if (event.kind === "schedules") return { kind: "schedules" };
  if (event.kind === "stop" && typeof event.instanceId === "string" && typeof event.owner === "string") {
    return { kind: "stop", instanceId: event.instanceId, owner: event.owner };
  }
  return undefined;
}

/**
 * The rows a `changed` event carries, each with the event's sequence; undefined when it carries
 * none or anything that is not a row (then they are read from the store).
 */
function pushedRows(value: unknown, sequence: number): StoredInstance[] | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const rows: StoredInstance[] = [];
  for (const row of value) {
    if (typeof row !== "object" || row === null) return undefined;
    const r = row as Record<string, unknown>;
    if (typeof r.id !== "string" || typeof r.deploymentId !== "string" || typeof r.status !== "string")
      return undefined;
    if (typeof r.revision !== "number" || typeof r.position !== "number") return undefined;
    rows.push({ ...(row as StoredInstance), sequence });
  }
  return rows;
}
