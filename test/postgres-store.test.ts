import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { TaskErrorInfo } from "../sdk/errors.js";
import type { ClusterEvent } from "../executor-platform/store/cluster-store.js";
import { openPostgresStore, type PostgresStore } from "../executor-platform/store/postgres/postgres-store.js";
import { INSTANCE_COLUMNS } from "../executor-platform/store/instance-columns.js";
import type { Store, StoredInstance } from "../executor-platform/store/store.js";
import { startPostgres, type TestPostgres } from "./helpers/embedded-postgres.js";
import { describeStoreContract, storedRow } from "./store-contract.js";

let server: TestPostgres;
let databases = 0;
const stores: PostgresStore[] = [];
const clients: pg.Client[] = [];
const warnings: Array<{ obj: object; msg: string }> = [];
const logger = { warn: (obj: object, msg: string) => warnings.push({ obj, msg }) };

beforeAll(async () => {
  server = await startPostgres();
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  for (const client of clients.splice(0)) await client.end();
  warnings.length = 0;
});

/** A new, empty database on the test server: every test starts from nothing. */
async function database(): Promise<string> {
  const name = `nt_test_${++databases}`;
  const admin = new pg.Client(server.url);
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  return url.href;
}

async function open(url: string): Promise<PostgresStore> {
  const store = await openPostgresStore(url, { logger });
  stores.push(store);
  return store;
}

async function sql<R extends pg.QueryResultRow>(
  url: string,
  text: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/** A row as a daemon hands it to `saveAssigned`: no sequence yet, the store gives it one. */
function row(n: number, overrides: Partial<StoredInstance> = {}): StoredInstance {
  return storedRow(n, { sequence: 0, ...overrides });
}

/** The stored row `id`, or undefined. */
async function getOne(store: Store, id: string): Promise<StoredInstance | undefined> {
  return (await store.getMany([id]))[0];
}

/** Records a store's events; `next` waits for the first not yet taken that matches. */
function record(store: PostgresStore) {
  const events: ClusterEvent[] = [];
  let taken = 0;
  let wake: (() => void) | undefined;
  const unsubscribe = store.subscribe((event) => {
    events.push(event);
    wake?.();
  });
  return {
    events,
    unsubscribe,
    /** Skips everything received so far. */
    drain(): void {
      taken = events.length;
    },
    async next(match: (event: ClusterEvent) => boolean, timeoutMs = 5_000): Promise<ClusterEvent> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        for (let i = taken; i < events.length; i++) {
          const event = events[i] as ClusterEvent;
          if (match(event)) {
            taken = i + 1;
            return event;
          }
        }
        const left = deadline - Date.now();
        if (left <= 0)
          throw new Error(`no matching event within ${timeoutMs} ms; got ${JSON.stringify(events)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
  };
}

const isChanged =
  (atLeast = 0) =>
  (event: ClusterEvent) =>
    event.kind === "changed" && event.sequence >= atLeast;
const isPending = (event: ClusterEvent) => event.kind === "pending";
const ids = (list: readonly StoredInstance[]) => list.map((r) => r.id);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Reaps through `store` until a lease has run out by the database clock and something was
 * reaped (within 10 s); `each` runs before every try (a survivor renewing its own lease).
 */
async function reapWhenExpired(
  store: PostgresStore,
  reason: (owner: string) => TaskErrorInfo = () => ({ name: "DaemonLostError", message: "gone" }),
  each: () => Promise<void> = async () => {},
): Promise<StoredInstance[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    expect(Date.now()).toBeLessThan(deadline);
    await each();
    const reaped = await store.reap(reason);
    if (reaped.length > 0) return reaped;
    await sleep(25);
  }
}
const view = (list: StoredInstance[]) => list.map((r) => `${r.id}@${r.sequence}`);

/** Waits until everything up to `sequence` is final (every older transaction has ended). */
async function final(store: PostgresStore, sequence: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const current = await store.currentSequence();
    if (current >= sequence) return;
    if (Date.now() > deadline) throw new Error(`sequence ${sequence} not final within 10 s (at ${current})`);
    await sleep(5);
  }
}

/** Saves each row in its own transaction; resolves the rows as stored, once final. */
async function saveEach(store: PostgresStore, rows: readonly StoredInstance[]): Promise<StoredInstance[]> {
  const stored: StoredInstance[] = [];
  for (const r of rows) stored.push(...(await store.saveAssigned([r])));
  await final(store, stored.at(-1)?.sequence ?? 0);
  return stored;
}

describeStoreContract("PostgreSQL", async () => {
  const url = await database();
  return {
    store: await openPostgresStore(url, { logger }),
    reopen: () => openPostgresStore(url, { logger }),
  };
});

describe("PostgresStore", () => {
  it("is shared, and resolves saved rows as stored, with the sequences it gave them", async () => {
    const store = await open(await database());
    expect(store.shared).toBe(true);
    const bare = row(1);
    const full = row(2, {
      args: undefined,
      status: "failed",
      progress: 0.75,
      output: '"partial"',
      result: "",
      error: {
        name: "RangeError",
        message: "too big",
        stack: "RangeError: too big\n    at x",
        code: "E_BIG",
      },
      startedAt: 1_700_000_000_100,
      finishedAt: 1_700_000_000_200,
      revision: 7,
      owner: "daemon-1",
    });
    const minimalError = row(3, {
      status: "failed",
      error: { name: "Error", message: "boom" },
      args: "ünïcödé ✓ \\ \" ' {}",
    });
    const stored = await store.saveAssigned([bare, full, minimalError]);
    // One transaction: one sequence, shared by all its rows.
    const sequence = stored[0]?.sequence ?? 0;
    expect(sequence).toBeGreaterThan(0);
    expect(stored).toStrictEqual([
      { ...bare, sequence },
      { ...full, sequence },
      { ...minimalError, sequence },
    ]);

    expect(await store.getMany(["inst-1", "inst-2", "inst-3", "missing"])).toStrictEqual(stored);
    expect(Object.keys(stored[2]?.error ?? {})).toEqual(["name", "message"]);
  });

  it("gives each save one sequence, after the last one, and positions to new rows, in order", async () => {
    const store = await open(await database());
    const first = await store.saveAssigned([
      row(0, { id: "a", position: 0 }),
      row(0, { id: "b", position: 0 }),
    ]);
    const s1 = first[0]?.sequence ?? 0;
    expect(first.map((r) => [r.id, r.sequence, r.position])).toEqual([
      ["a", s1, 1],
      ["b", s1, 2],
    ]);
    // A row with an explicit position keeps it and moves the position counter past it.
    const second = await store.saveAssigned([row(10, { id: "c" }), row(0, { id: "d", position: 0 })]);
    const s2 = second[0]?.sequence ?? 0;
    expect(s2).toBeGreaterThan(s1);
    expect(second.map((r) => [r.id, r.sequence, r.position])).toEqual([
      ["c", s2, 10],
      ["d", s2, 11],
    ]);
    // An existing row saved with position 0 keeps the position it has.
    const third = await store.saveAssigned([
      row(0, { id: "a", position: 0, status: "running", revision: 2 }),
    ]);
    const s3 = third[0]?.sequence ?? 0;
    expect(s3).toBeGreaterThan(s2);
    expect(third.map((r) => [r.id, r.sequence, r.position, r.status])).toEqual([["a", s3, 1, "running"]]);
    // The same id twice in one batch: one row, the last one wins.
    const fourth = await store.saveAssigned([
      row(0, { id: "e", position: 0, progress: 0.1 }),
      row(0, { id: "e", position: 0, progress: 0.2 }),
    ]);
    const s4 = fourth[0]?.sequence ?? 0;
    expect(s4).toBeGreaterThan(s3);
    expect(fourth.map((r) => [r.id, r.sequence, r.position, r.progress])).toEqual([["e", s4, 12, 0.2]]);
    expect(await getOne(store, "e")).toStrictEqual(fourth[0]);
    await final(store, s4);
    const counters = await store.counters();
    expect(counters.position).toBe(12);
    expect(counters.sequence).toBeGreaterThanOrEqual(s4);
    expect(await store.saveAssigned([])).toEqual([]);
    // Definitions alone change no instance.
    const definition = { deploymentId: "dep-a", id: "t1", name: "resize", module: "/app/a.ts" };
    expect(await store.saveAssigned([], [definition])).toEqual([]);
    await final(store, await store.currentSequence());
    expect(await store.changesSinceAll(s4, 10)).toEqual([]);
    expect(await store.listDefinitions("dep-a")).toEqual([definition]);
  });

  it("returns changes of every deployment since a sequence, by sequence", async () => {
    const store = await open(await database());
    // One save each, in this order: inst-3, inst-1, inst-4 (dep-b), inst-2.
    const [s3, s1, s4, s2] = (
      await saveEach(store, [row(3), row(1), row(4, { deploymentId: "dep-b" }), row(2)])
    ).map((r) => r.sequence) as [number, number, number, number];
    expect(view(await store.changesSinceAll(0, 10))).toEqual([
      `inst-3@${s3}`,
      `inst-1@${s1}`,
      `inst-4@${s4}`,
      `inst-2@${s2}`,
    ]);
    expect(view(await store.changesSinceAll(s1, 1))).toEqual([`inst-4@${s4}`]);
    expect(await store.changesSinceAll(0, 0)).toEqual([]);

    const [changed] = await saveEach(store, [row(3, { revision: 2, status: "running" })]);
    const s5 = changed?.sequence ?? 0;
    expect(view(await store.changesSinceAll(s2, 10))).toEqual([`inst-3@${s5}`]);
    expect(await store.currentSequence()).toBeGreaterThanOrEqual(s5);

    // A page ends at a transaction's last row, ordered by id within it.
    const batch = await store.saveAssigned([row(7), row(5, { deploymentId: "dep-b" }), row(6)]);
    await final(store, batch[0]?.sequence ?? 0);
    expect(ids(await store.changesSinceAll(s5, 1))).toEqual(["inst-5", "inst-6", "inst-7"]);
    expect(ids(await store.changesSince("dep-a", s5, 1))).toEqual(["inst-6", "inst-7"]);
  });

  it("assigns positions to 20,000 new rows saved in one batch", async () => {
    const store = await open(await database());
    const rows = Array.from({ length: 20_000 }, (_, i) =>
      row(0, {
        id: `bulk-${i}`,
        position: 0,
        output: "x".repeat(50),
        error: i % 10 === 0 ? { name: "Error", message: "m" } : undefined,
      }),
    );
    // One row first, so the batch's positions continue after it.
    await store.save([row(1, { id: "first" })]);
    const stored = await store.saveAssigned(rows);
    expect(stored.at(-1)).toMatchObject({ id: "bulk-19999", position: 20_001 });
    // Several statements, one transaction: one sequence.
    expect(new Set(stored.map((r) => r.sequence)).size).toBe(1);
    expect((await store.counters()).position).toBe(20_001);
    expect(await getOne(store, "bulk-10")).toStrictEqual(stored[10]);
  });

  it("lets a reader of concurrent saves from two stores see every row once, in sequence order", async () => {
    const url = await database();
    const a = await open(url);
    const b = await open(url);
    const reader = await open(url);
    const batches = 40;
    const perBatch = 25;
    let writing = true;
    const seen = new Map<string, number>();
    let cursor = 0;
    const read = async () => {
      for (;;) {
        const done = !writing;
        for (;;) {
          const changes = await reader.changesSinceAll(cursor, 500);
          for (const change of changes) {
            expect(change.sequence).toBeGreaterThan(cursor);
            expect(seen.has(change.id)).toBe(false);
            seen.set(change.id, change.sequence);
          }
          cursor = changes.at(-1)?.sequence ?? cursor;
          if (changes.length < 500) break;
        }
        if (done) return;
        await sleep(1);
      }
    };
    const write = async (store: PostgresStore, name: string) => {
      let last = 0;
      for (let batch = 0; batch < batches; batch++) {
        const rows = Array.from({ length: perBatch }, (_, i) =>
          row(0, { id: `${name}-${batch}-${i}`, position: 0, owner: name, status: "running" }),
        );
        const stored = await store.saveAssigned(rows);
        // One batch: one sequence, after everything this store saved before.
        expect(stored[0]?.sequence).toBeGreaterThan(last);
        expect(stored.map((r) => r.sequence)).toEqual(stored.map(() => stored[0]?.sequence));
        last = stored[0]?.sequence ?? 0;
        for (const r of stored) saved.set(r.id, r.sequence);
      }
    };
    const saved = new Map<string, number>();
    const reading = read();
    await Promise.all([write(a, "a"), write(b, "b")]);
    await final(reader, Math.max(...saved.values()));
    writing = false;
    await reading;

    const total = 2 * batches * perBatch;
    // A reader that only ever moved forward saw every row, as saved: no row committed behind its cursor.
    expect(seen.size).toBe(total);
    expect(seen).toEqual(saved);
    expect((await reader.counters()).position).toBe(total);
  });

  it("never lets a reader past a write still in flight, and shows it once it commits", async () => {
    const url = await database();
    const store = await open(url);
    const reader = await open(url);
    const [base] = await saveEach(store, [row(9)]);
    let cursor = base?.sequence ?? 0;
    // A transaction holds inst-9: the save below that includes it starts (and takes its
    // sequence) but cannot finish.
    const holder = new pg.Client(url);
    clients.push(holder);
    await holder.connect();
    await holder.query("BEGIN");
    await holder.query("SELECT id FROM instances WHERE id = 'inst-9' FOR UPDATE");
    const slow = store.saveAssigned([row(1), row(9, { revision: 2, status: "running" })]);
    const deadline = Date.now() + 10_000;
    while ((await sql(url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).length === 0) {
      expect(Date.now(), "the save never waited for the held row").toBeLessThan(deadline);
      await sleep(5);
    }
    // A later save commits while the first is still in flight.
    const [fast] = await store.saveAssigned([row(2)]);
    expect(await getOne(reader, "inst-2")).toStrictEqual(fast);
    // The reader neither sees it yet nor moves its horizon past the write in flight.
    for (let i = 0; i < 3; i++) {
      const page = await reader.changesSinceAll(cursor, 10);
      expect(page).toEqual([]);
      expect(await reader.currentSequence()).toBeLessThan(fast?.sequence ?? 0);
      await sleep(20);
    }
    await holder.query("ROLLBACK");
    const stored = await slow;
    const first = stored[0]?.sequence ?? 0;
    expect(first).toBeLessThan(fast?.sequence ?? 0);
    await final(reader, fast?.sequence ?? 0);
    const seen = await reader.changesSinceAll(cursor, 10);
    expect(view(seen)).toEqual([`inst-1@${first}`, `inst-9@${first}`, `inst-2@${fast?.sequence}`]);
    cursor = seen.at(-1)?.sequence ?? cursor;
    expect(await reader.changesSinceAll(cursor, 10)).toEqual([]);
  });

  it("lets two stores racing to claim 1,000 pending rows claim each exactly once", async () => {
    const url = await database();
    const a = await open(url);
    const b = await open(url);
    // Daemons hold a lease before they claim or save (a reaped one is refused both).
    await Promise.all(["daemon-a", "daemon-b"].map((owner) => a.heartbeat(owner, 60_000)));
    const rows = Array.from({ length: 1_000 }, (_, i) => row(i + 1));
    const [saved] = await a.saveAssigned([
      ...rows,
      row(2_000, { id: "taken", owner: "someone" }),
      row(2_001, { id: "done", status: "completed" }),
    ]);
    const claimed = new Map<string, string[]>();
    const claimAll = async (store: PostgresStore, owner: string) => {
      let last = 0;
      for (;;) {
        const got = await store.claim(owner, 17);
        if (got.length === 0) return;
        // One claim, one transaction: one new sequence, after the save's.
        expect(got.map((r) => r.sequence)).toEqual(got.map(() => got[0]?.sequence));
        expect(got[0]?.sequence).toBeGreaterThan(saved?.sequence ?? 0);
        for (const r of got) {
          expect(r.owner).toBe(owner);
          expect(r.revision).toBe(2);
          expect(r.position).toBeGreaterThan(last);
          last = r.position;
          claimed.set(r.id, [...(claimed.get(r.id) ?? []), owner]);
        }
      }
    };
    await Promise.all([claimAll(a, "daemon-a"), claimAll(b, "daemon-b"), claimAll(a, "daemon-a2")]);
    expect(claimed.size).toBe(1_000);
    for (const owners of claimed.values()) expect(owners).toHaveLength(1);
    const byOwner = new Set([...claimed.values()].map((owners) => owners[0]));
    expect(byOwner.size).toBeGreaterThan(1);
    const stored = await a.getMany([...claimed.keys()]);
    for (const r of stored) expect(r.owner).toBe(claimed.get(r.id)?.[0]);
    expect(await a.claim("daemon-a", 10)).toEqual([]);
    expect((await getOne(a, "taken"))?.owner).toBe("someone");
    expect(await a.claim("daemon-a", 0)).toEqual([]);
  });

  it("claims in creation order and publishes changed", async () => {
    const url = await database();
    const a = await open(url);
    const b = await open(url);
    // Daemons hold a lease before they claim or save (a reaped one is refused both).
    await Promise.all(["daemon-a", "daemon-b"].map((owner) => a.heartbeat(owner, 60_000)));
    const events = record(b);
    await b.listening();
    const [saved] = await a.saveAssigned([row(3), row(1), row(2), row(4, { status: "running", owner: "x" })]);
    const s = saved?.sequence ?? 0;
    await events.next(isChanged(s));
    const got = await a.claim("daemon-a", 2);
    const claimedAt = got[0]?.sequence ?? 0;
    expect(claimedAt).toBeGreaterThan(s);
    expect(got.map((r) => [r.id, r.owner, r.sequence])).toEqual([
      ["inst-1", "daemon-a", claimedAt],
      ["inst-2", "daemon-a", claimedAt],
    ]);
    expect(await events.next(isChanged(claimedAt))).toEqual({
      kind: "changed",
      sequence: claimedAt,
      by: "daemon-a",
    });
    await final(b, claimedAt);
    expect((await b.changesSinceAll(s, 10)).map((r) => r.id)).toEqual(["inst-1", "inst-2"]);
  });

  it("carries a small save's rows in its changed event, and leaves big or new rows to be read", async () => {
    const url = await database();
    const a = await open(url);
    const b = await open(url);
    // Daemons hold a lease before they claim or save (a reaped one is refused both).
    await Promise.all(["daemon-a", "daemon-b"].map((owner) => a.heartbeat(owner, 60_000)));
    const events = record(b);
    await b.listening();
    const [held] = await a.saveAssigned([row(1, { status: "running", owner: "daemon-a" })]);
    const running = held as StoredInstance;
    const progressed = { ...running, progress: 0.5, revision: 2 };
    const small = await a.saveAndClaim([progressed], [], { owner: "daemon-a", limit: 0 });
    const at = small.stored[0]?.sequence ?? 0;
    const event = await events.next(isChanged(at));
    expect(event).toMatchObject({ kind: "changed", sequence: at, by: "daemon-a" });
    // As stored: the same row a read gives.
    expect(event.kind === "changed" ? event.rows : undefined).toEqual([await getOne(b, "inst-1")]);

    const big = { ...progressed, output: JSON.stringify("x".repeat(10_000)), revision: 3 };
    const bigAt = (await a.saveAndClaim([big], [], { owner: "daemon-a", limit: 0 })).stored[0]?.sequence ?? 0;
    expect(await events.next(isChanged(bigAt))).toEqual({ kind: "changed", sequence: bigAt, by: "daemon-a" });
    const fresh = (
      await a.saveAndClaim([row(0, { id: "new", position: 0 })], [], { owner: "daemon-a", limit: 0 })
    ).stored[0];
    expect(await events.next(isChanged(fresh?.sequence ?? 0))).toEqual({
      kind: "changed",
      sequence: fresh?.sequence,
      by: "daemon-a",
    });
  });

  it("writes an end and claims the next work in one statement, naming the daemon in its event", async () => {
    const url = await database();
    const a = await open(url);
    const b = await open(url);
    // Daemons hold a lease before they claim or save (a reaped one is refused both).
    await Promise.all(["daemon-a", "daemon-b"].map((owner) => a.heartbeat(owner, 60_000)));
    const events = record(b);
    await b.listening();
    const [held] = await a.saveAssigned([
      row(1, { status: "running", owner: "daemon-a" }),
      row(2),
      row(3, { priority: 5 }),
      row(4),
      row(5, { concurrencyLimit: 1 }),
    ]);
    const ended = { ...(held as StoredInstance), status: "completed" as const, result: "1", revision: 2 };
    // inst-6 is saved (new, pending) by this very statement: not claimable by it.
    const saved = await a.saveAndClaim([ended, row(6)], [], { owner: "daemon-a", limit: 2 });
    const at = saved.stored[0]?.sequence ?? 0;
    expect(saved.stored.map((r) => [r.id, r.status, r.sequence])).toEqual([
      ["inst-1", "completed", at],
      ["inst-6", "pending", at],
    ]);
    // Highest priority first, then by position; both with the save's sequence.
    expect(saved.claimed.map((r) => [r.id, r.owner, r.revision, r.sequence])).toEqual([
      ["inst-3", "daemon-a", 2, at],
      ["inst-2", "daemon-a", 2, at],
    ]);
    expect(saved.limitedWaiting).toBe(true);
    expect(await events.next(isChanged(at))).toEqual({ kind: "changed", sequence: at, by: "daemon-a" });
    expect((await getOne(b, "inst-2"))?.owner).toBe("daemon-a");
    expect((await getOne(b, "inst-4"))?.owner).toBe("");

    // Without a claim: nothing claimed, nothing looked for.
    const plain = await a.saveAndClaim([row(7)], [], { owner: "daemon-a", limit: 0 });
    expect(plain.claimed).toEqual([]);
    expect(plain.limitedWaiting).toBe(false);
    // The limited row is left to the claim function (which takes it after the others).
    expect((await a.claim("daemon-b", 5)).map((r) => r.id)).toEqual(["inst-4", "inst-6", "inst-7", "inst-5"]);
  });

  it("cancels only pending rows that no daemon owns", async () => {
    const url = await database();
    const store = await open(url);
    const [saved] = await store.saveAssigned([
      row(1),
      row(2, { owner: "daemon-a" }),
      row(3, { status: "running", owner: "daemon-a" }),
      row(4, { status: "completed", result: "1" }),
    ]);
    const events = record(store);
    await store.listening();
    const before = Date.now();
    const cancelled = await store.cancelPending("inst-1");
    expect(cancelled).toMatchObject({
      id: "inst-1",
      status: "cancelled",
      args: undefined,
      revision: 2,
      position: 1,
      owner: "",
    });
    const at = cancelled?.sequence ?? 0;
    expect(at).toBeGreaterThan(saved?.sequence ?? 0);
    expect(cancelled?.finishedAt).toBeGreaterThanOrEqual(before);
    expect(await getOne(store, "inst-1")).toStrictEqual(cancelled);
    await events.next(isChanged(at));
    expect(await store.cancelPending("inst-1")).toBeUndefined();
    expect(await store.cancelPending("inst-2")).toBeUndefined();
    expect(await store.cancelPending("inst-3")).toBeUndefined();
    expect(await store.cancelPending("inst-4")).toBeUndefined();
    expect(await store.cancelPending("missing")).toBeUndefined();
    // The refused cancels changed nothing.
    await final(store, await store.currentSequence());
    expect(view(await store.changesSinceAll(saved?.sequence ?? 0, 10))).toEqual([`inst-1@${at}`]);
    expect((await getOne(store, "inst-2"))?.status).toBe("pending");
  });

  it("lists the daemons holding a lease with how many instances each runs (the console's cluster view)", async () => {
    const url = await database();
    const a = await open(url);
    const b = await open(url);
    expect(await a.heartbeat("daemon-a", 5_000)).toBe(true);
    expect(await b.heartbeat("daemon-b", 5_000)).toBe(true);
    await a.save([row(1), row(2), row(3)]);
    const claimed = await a.claim("daemon-a", 3);
    const [one, two] = claimed as [StoredInstance, StoredInstance];
    await a.save([
      { ...one, status: "running", startedAt: 10, revision: one.revision + 1 },
      { ...two, status: "running", startedAt: 11, revision: two.revision + 1 },
    ]);
    const daemons = await b.daemons();
    expect(daemons.map(({ owner, running }) => ({ owner, running }))).toEqual([
      { owner: "daemon-a", running: 2 },
      { owner: "daemon-b", running: 0 },
    ]);
    for (const daemon of daemons) expect(daemon.leaseUntil).toBeGreaterThan(Date.now() - 60_000);
  });

  it("keeps a stop on the row: its owner hears it, a claim says so, and reaping cancels rather than retries", async () => {
    const url = await database();
    const dying = await open(url);
    const survivor = await open(url);
    const events = record(dying);
    await dying.listening();
    expect(await dying.heartbeat("daemon-a", 5_000)).toBe(true);
    await dying.save([
      row(1, { maxAttempts: 3 }),
      row(2, { maxAttempts: 3 }),
      row(3),
      row(4, { status: "completed", result: "1" }),
    ]);
    // Asked before anyone claimed it: marked, nobody to tell; the claim hands it over marked.
    expect(await survivor.requestStop("inst-2")).toEqual({ owner: "", status: "pending" });
    const claimed = await dying.claim("daemon-a", 3);
    expect(claimed.map((r) => [r.id, r.stopRequested])).toEqual([
      ["inst-1", undefined],
      ["inst-2", true],
      ["inst-3", undefined],
    ]);
    const one = claimed[0] as StoredInstance;
    await dying.save([{ ...one, status: "running", startedAt: 10, revision: one.revision + 1 }]);
    // Asked of a held row: its owner is told, and finds it on the row too.
    expect(await survivor.requestStop("inst-1")).toEqual({ owner: "daemon-a", status: "running" });
    expect(await events.next((e) => e.kind === "stop")).toEqual({
      kind: "stop",
      instanceId: "inst-1",
      owner: "daemon-a",
    });
    expect((await dying.stopsRequested("daemon-a")).sort()).toEqual(["inst-1", "inst-2"]);
    // And on the rows it writes: a stop missed (the event lost) shows at its next progress.
    const [current] = await dying.getMany(["inst-1"]);
    const progressed = { ...(current as StoredInstance), progress: 0.5, revision: 4 };
    const written = await dying.saveAndClaim([progressed], [], { owner: "daemon-a", limit: 0 });
    expect(written.stopsRequested).toEqual(["inst-1"]);
    expect((await dying.saveAndClaim([row(9)], [], { owner: "daemon-a", limit: 0 })).stopsRequested).toEqual(
      [],
    );
    // Ended or unknown: nothing to stop.
    expect(await survivor.requestStop("inst-4")).toBeUndefined();
    expect(await survivor.requestStop("no-such")).toBeUndefined();

    // daemon-a dies: its stopped rows are cancelled (inst-1 had attempts left), inst-3 is freed.
    expect(await dying.heartbeat("daemon-a", 1)).toBe(true);
    const reaped = await reapWhenExpired(survivor);
    const byId = new Map(reaped.map((r) => [r.id, r]));
    expect(byId.get("inst-1")).toMatchObject({
      status: "cancelled",
      error: undefined,
      args: undefined,
      attempt: 1,
    });
    expect(byId.get("inst-1")?.finishedAt).toBeGreaterThan(0);
    expect(byId.get("inst-2")).toMatchObject({ status: "cancelled", error: undefined });
    expect(byId.get("inst-3")).toMatchObject({ status: "pending", owner: "" });
  });

  it("refuses the changes and claims of a daemon whose lease was reaped, and keeps its new rows", async () => {
    const url = await database();
    const dying = await open(url);
    const survivor = await open(url);
    expect(await dying.heartbeat("daemon-a", 5_000)).toBe(true);
    await dying.save([row(1), row(2)]);
    const [claimed] = await dying.claim("daemon-a", 1);
    const held = claimed as StoredInstance;
    const running = { ...held, status: "running" as const, startedAt: 10, revision: held.revision + 1 };
    const [started] = (await dying.saveAndClaim([running], [], { owner: "daemon-a", limit: 0 })).stored;
    // Presumed dead: its lease runs out and another daemon reaps it.
    expect(await dying.heartbeat("daemon-a", 1)).toBe(true);
    const reaped = await reapWhenExpired(survivor);
    expect(reaped.map((r) => [r.id, r.status])).toEqual([["inst-1", "failed"]]);
    // Its end, written late, does not replace the failure; it claims nothing; a new call it took is kept.
    const late = {
      ...(started as StoredInstance),
      status: "completed" as const,
      result: "J2",
      revision: (started as StoredInstance).revision + 1,
    };
    const written = await dying.saveAndClaim([late, row(5)], [], { owner: "daemon-a", limit: 2 });
    expect(written.fenced).toEqual(["inst-1"]);
    expect(written.stored.map((r) => r.id)).toEqual(["inst-5"]);
    expect(written.claimed).toEqual([]);
    expect(await dying.claim("daemon-a", 2)).toEqual([]);
    const [one, two] = await survivor.getMany(["inst-1", "inst-2"]);
    expect(one).toMatchObject({ status: "failed", result: undefined });
    expect(two).toMatchObject({ status: "pending", owner: "" });
  });

  it("reaps rows held by an owner with no lease at all (its claim committed as it was reaped)", async () => {
    const url = await database();
    const store = await open(url);
    expect(await store.heartbeat("daemon-live", 60_000)).toBe(true);
    await store.save([
      row(1, { status: "running", owner: "ghost", startedAt: 5 }),
      row(2, { owner: "ghost" }),
      row(3, { status: "running", owner: "daemon-live", startedAt: 5 }),
    ]);
    const reaped = await store.reap((owner) => ({ name: "DaemonLostError", message: `lost ${owner}` }));
    expect(reaped.map((r) => [r.id, r.status, r.owner, r.error?.message])).toEqual([
      ["inst-1", "failed", "ghost", "lost ghost"],
      ["inst-2", "pending", "", undefined],
    ]);
    // The live daemon's row is left alone, and nothing is left to reap.
    expect((await store.getMany(["inst-3"]))[0]).toMatchObject({ status: "running", owner: "daemon-live" });
    expect(await store.reap(() => ({ name: "X", message: "x" }))).toEqual([]);
  });

  it("reaps a daemon whose lease ran out: running rows fail, pending rows are freed, its heartbeat says false", async () => {
    const url = await database();
    const dying = await open(url);
    const survivor = await open(url);
    const events = record(survivor);
    await survivor.listening();
    expect(await dying.heartbeat("daemon-a", 5_000)).toBe(true);
    expect(await survivor.heartbeat("daemon-b", 5_000)).toBe(true);
    await dying.save([row(1), row(2), row(3), row(4), row(5, { status: "completed", owner: "" })]);
    const claimedA = await dying.claim("daemon-a", 3);
    expect(ids(claimedA)).toEqual(["inst-1", "inst-2", "inst-3"]);
    const claimedB = await survivor.claim("daemon-b", 1);
    expect(ids(claimedB)).toEqual(["inst-4"]);
    const [one, two] = claimedA as [StoredInstance, StoredInstance];
    await dying.save([
      { ...one, status: "running", startedAt: 10, revision: one.revision + 1 },
      { ...two, status: "running", startedAt: 11, revision: two.revision + 1, output: '"half"' },
    ]);
    // daemon-a renews a few times: not reaped while its lease holds.
    for (let i = 0; i < 3; i++) {
      await sleep(50);
      expect(await dying.heartbeat("daemon-a", 5_000)).toBe(true);
      expect(await survivor.reap(() => ({ name: "X", message: "x" }))).toEqual([]);
    }
    // Reads the database clock on a connection opened beforehand, so each reading is quick.
    const clock = new pg.Client(url);
    clients.push(clock);
    await clock.connect();
    // Its last renewal is short, then it stops renewing.
    expect(await dying.heartbeat("daemon-a", 300)).toBe(true);
    // As text: a Date would drop the microseconds of the database clock.
    const lease = await clock.query<{ until: string }>(
      "SELECT lease_until::text AS until FROM daemons WHERE owner = 'daemon-a'",
    );
    const leaseUntil = lease.rows[0]?.until;

    const reason = (owner: string): TaskErrorInfo => ({
      name: "DaemonLostError",
      message: `daemon ${owner} stopped renewing its lease`,
      code: "DAEMON_LOST",
    });
    // Now it stops; the survivor polls until the lease has run out by the database clock.
    const reaped = await reapWhenExpired(survivor, reason, async () => {
      expect(await survivor.heartbeat("daemon-b", 5_000)).toBe(true);
    });
    // Not before the lease ran out: right after the reap, the database clock is past it (a reap
    // soon after the short renewal would find the clock still before it).
    const after = await clock.query<{ past: boolean }>("SELECT now() > $1::timestamptz AS past", [
      leaseUntil,
    ]);
    expect(after.rows, `reaped before the lease ran out at ${leaseUntil}`).toEqual([{ past: true }]);
    const byId = new Map(reaped.map((r) => [r.id, r]));
    expect([...byId.keys()].sort()).toEqual(["inst-1", "inst-2", "inst-3"]);
    expect(byId.get("inst-1")).toMatchObject({
      status: "failed",
      error: reason("daemon-a"),
      args: undefined,
      owner: "daemon-a",
      startedAt: 10,
      revision: 4,
    });
    expect(byId.get("inst-1")?.finishedAt).toBeGreaterThan(0);
    expect(byId.get("inst-2")).toMatchObject({
      status: "failed",
      output: '"half"',
      error: reason("daemon-a"),
    });
    expect(byId.get("inst-3")).toMatchObject({ status: "pending", owner: "", args: "[3]", revision: 3 });
    expect(byId.get("inst-3")?.finishedAt).toBeUndefined();
    expect(byId.get("inst-3")?.error).toBeUndefined();
    // One reap, one transaction: one new sequence.
    const current = reaped[0]?.sequence ?? 0;
    expect(current).toBeGreaterThan(claimedB[0]?.sequence ?? 0);
    expect(reaped.map((r) => r.sequence)).toEqual([current, current, current]);
    for (const r of reaped) expect(await getOne(survivor, r.id)).toStrictEqual(r);
    // daemon-b's row is untouched, and so is its lease.
    expect(await getOne(survivor, "inst-4")).toStrictEqual(claimedB[0]);
    await events.next(isChanged(current));
    await events.next(isPending);

    // The freed row can be claimed again; the reaped daemon learns it is presumed dead.
    expect(ids(await survivor.claim("daemon-b", 10))).toEqual(["inst-3"]);
    expect(await dying.heartbeat("daemon-a", 300)).toBe(false);
    expect(await dying.heartbeat("daemon-a", 300)).toBe(false);
    expect(await sql(url, "SELECT owner FROM daemons ORDER BY owner")).toEqual([{ owner: "daemon-b" }]);
    expect(await survivor.reap(reason)).toEqual([]);
    // A daemon under a new name joins again.
    expect(await dying.heartbeat("daemon-c", 300)).toBe(true);
    expect(await survivor.heartbeat("daemon-b", 5_000)).toBe(true);
  });

  it("reaps an expired daemon that holds nothing, and lets reason errors through", async () => {
    const url = await database();
    const store = await open(url);
    expect(await store.heartbeat("idle", 0)).toBe(true);
    await store.save([row(1, { status: "running", owner: "busy" })]);
    expect(await store.heartbeat("busy", 0)).toBe(true);
    await sleep(20);
    const boom = new Error("reason failed");
    await expect(
      store.reap(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect((await getOne(store, "inst-1"))?.status).toBe("running");
    expect(ids(await store.reap((owner) => ({ name: "Lost", message: owner })))).toEqual(["inst-1"]);
    expect(await sql(url, "SELECT owner FROM daemons")).toEqual([]);
    expect(await store.heartbeat("idle", 1_000)).toBe(false);
  });

  it("publishes events to every subscribed store, including changed and pending after a save", async () => {
    const url = await database();
    const a = await open(url);
    const b = await open(url);
    const atA = record(a);
    const atB = record(b);
    await Promise.all([a.listening(), b.listening()]);
    // Listening starts with the catch-up events: changed up to what is final.
    const catchUp = await atA.next(() => true);
    expect(catchUp).toEqual({ kind: "changed", sequence: expect.any(Number) });
    expect(catchUp.kind === "changed" && catchUp.sequence).toBeLessThanOrEqual(await a.currentSequence());
    expect(await atA.next(() => true)).toEqual({ kind: "pending", resync: true });
    atB.drain();

    await a.publish({ kind: "stop", instanceId: "inst-9", owner: "daemon-b" });
    const stop = { kind: "stop", instanceId: "inst-9", owner: "daemon-b" };
    expect(await atA.next(() => true)).toEqual(stop);
    expect(await atB.next(() => true)).toEqual(stop);

    const [one] = await b.saveAssigned([row(1, { status: "running", owner: "daemon-b" })]);
    expect(await atA.next(() => true)).toEqual({ kind: "changed", sequence: one?.sequence });
    const [two] = await b.saveAssigned([row(2)]);
    expect(await atA.next(() => true)).toEqual({ kind: "changed", sequence: two?.sequence });
    expect(await atA.next(() => true)).toEqual({ kind: "pending" });
    await atB.next(isChanged(two?.sequence ?? Number.POSITIVE_INFINITY));
    await atB.next(isPending);

    await a.publish({ kind: "pending" });
    await a.publish({ kind: "changed", sequence: 2 });
    expect(await atB.next(() => true)).toEqual({ kind: "pending" });
    expect(await atB.next(() => true)).toEqual({ kind: "changed", sequence: 2 });

    // A malformed payload from someone else is ignored, with a warning.
    await sql(url, "SELECT pg_notify('numerous_tasks', 'not json')");
    await a.publish({ kind: "pending" });
    expect(await atA.next(() => true)).toEqual({ kind: "pending" });
    expect(await atA.next(() => true)).toEqual({ kind: "changed", sequence: 2 });
    expect(await atA.next(() => true)).toEqual({ kind: "pending" });
    expect(warnings.map((w) => w.msg)).toContain("ignored a malformed task store event");

    // A listener that throws does not stop the others.
    const unsubscribeThrower = a.subscribe(() => {
      throw new Error("listener bug");
    });
    // b's connection stays open through a second recorder, which shows when b received the event.
    const alsoAtB = record(b);
    atB.unsubscribe();
    await a.publish({ kind: "stop", instanceId: "x", owner: "y" });
    expect(await atA.next((e) => e.kind === "stop")).toEqual({ kind: "stop", instanceId: "x", owner: "y" });
    unsubscribeThrower();
    unsubscribeThrower();
    // b has received it: a listener that unsubscribed before did not get it.
    await alsoAtB.next((e) => e.kind === "stop" && e.instanceId === "x");
    expect(atB.events.some((e) => e.kind === "stop" && e.instanceId === "x")).toBe(false);
    alsoAtB.unsubscribe();
    atA.unsubscribe();
  });

  it("survives a database restart: queries fail clearly while it is down, then work, and events catch up", async () => {
    const url = await database();
    const a = await open(url);
    const b = await open(url);
    const events = record(a);
    await a.listening();
    const [one] = await b.saveAssigned([row(1)]);
    await events.next(isChanged(one?.sequence ?? Number.POSITIVE_INFINITY));
    events.drain();

    await server.restart({
      whileDown: async () => {
        const error = await a.getMany(["inst-1"]).then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        expect(error).toBeInstanceOf(Error);
        const where = new URL(url);
        expect(error?.message).toContain(`${where.hostname}:${where.port}${where.pathname}`);
        expect(error?.message).not.toContain(where.password);
        await expect(b.save([row(2)])).rejects.toThrow(where.pathname);
        await expect(a.claim("x", 1)).rejects.toThrow(/task store postgres:\/\/postgres@/);
      },
    });

    // The pools reconnect by themselves.
    expect((await getOne(a, "inst-1"))?.id).toBe("inst-1");
    const [two] = await b.saveAssigned([row(2)]);
    // The listener reconnects and catches up (the save above may also be notified live).
    await events.next(isChanged(two?.sequence ?? Number.POSITIVE_INFINITY), 10_000);
    await events.next(isPending, 10_000);
    await a.listening();
    events.drain();
    const [three] = await b.saveAssigned([row(3)]);
    await events.next(isChanged(three?.sequence ?? Number.POSITIVE_INFINITY));
    expect(warnings.map((w) => w.msg)).toContain("task store events disconnected; reconnecting");
  });

  it("fails a write whose connection is killed mid-transaction, and keeps working", async () => {
    const url = await database();
    const store = await open(url);
    await store.save([row(1)]);
    // Someone holds inst-1, so the save below waits inside its transaction.
    const holder = new pg.Client(url);
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT id FROM instances WHERE id = 'inst-1' FOR UPDATE");
      const saving = store.save([row(2), row(1, { revision: 2, status: "running" })]).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      const deadline = Date.now() + 5_000;
      for (;;) {
        const waiting = await holder.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'`,
        );
        if (waiting.rows.length > 0) break;
        expect(Date.now()).toBeLessThan(deadline);
        await sleep(10);
      }
      const error = await saving;
      expect(error?.message).toMatch(/^task store postgres:\/\/postgres@127\.0\.0\.1:\d+\/nt_test_\d+: /);
      await holder.query("ROLLBACK");
    } finally {
      await holder.end();
    }
    // The failed save left nothing behind.
    expect(ids(await store.list({ deploymentId: "dep-a", limit: 10 }))).toEqual(["inst-1"]);
    expect((await getOne(store, "inst-1"))?.status).toBe("pending");
    await store.save([row(2)]);
    expect(ids(await store.list({ deploymentId: "dep-a", limit: 10 }))).toEqual(["inst-1", "inst-2"]);
  });

  it("migrates a fresh database once when several daemons open it at once, and refuses a newer schema", async () => {
    const url = await database();
    const opened = await Promise.all(Array.from({ length: 5 }, () => open(url)));
    expect(await sql(url, "SELECT version FROM numerous_tasks_schema")).toEqual([{ version: 9 }]);
    expect(await sql(url, "SELECT value FROM feed_offset")).toEqual([{ value: "0" }]);
    const [saved] = (await opened[0]?.saveAssigned([row(0, { position: 0 })])) ?? [];
    await final(opened[4] as PostgresStore, saved?.sequence ?? 0);
    expect((await opened[4]?.counters())?.position).toBe(1);
    // The counters table is no longer written.
    expect(await sql(url, "SELECT sequence, position FROM counters")).toEqual([
      { sequence: "0", position: "0" },
    ]);
    // Reopening an up-to-date database keeps the data.
    const again = await open(url);
    expect(await getOne(again, "inst-0")).toStrictEqual(saved);

    await sql(url, "UPDATE numerous_tasks_schema SET version = 99");
    await expect(openPostgresStore(url)).rejects.toThrow(/schema version 99.*upgrade numerous-tasks/);
  });

  it("upgrades a schema 1 database with its data: sequences and positions continue after what is stored", async () => {
    const url = await database();
    const first = await open(url);
    // What schema 1 left: counters moved under a lock, rows with sequences up to them.
    const old = 5_000_000_000;
    await first.save([row(40, { sequence: 0 })]);
    await sql(url, "UPDATE instances SET sequence = $1", [old - 1]);
    await sql(
      url,
      `DROP TABLE feed_offset; DROP SEQUENCE instance_positions;
       DROP FUNCTION numerous_tasks_claim; DROP INDEX instances_limited, instances_finished; DROP TABLE schedules;
       DROP TRIGGER instance_logs_go_with_instances ON instances; DROP FUNCTION numerous_tasks_drop_logs;
       DROP TABLE instance_logs;
       ALTER TABLE instances DROP COLUMN exit_code, DROP COLUMN cpu_seconds, DROP COLUMN peak_memory_bytes;
       ALTER TABLE instances DROP COLUMN options, DROP COLUMN priority, DROP COLUMN ready_at,
         DROP COLUMN attempt, DROP COLUMN max_attempts, DROP COLUMN attempts,
         DROP COLUMN concurrency_limit, DROP COLUMN per_key_limit, DROP COLUMN concurrency_key,
         DROP COLUMN trace_context, DROP COLUMN stop_requested;
       CREATE INDEX instances_open ON instances (owner, position) WHERE status IN ('pending', 'running');
       UPDATE counters SET sequence = ${old}, position = 40; UPDATE numerous_tasks_schema SET version = 1`,
    );
    await first.close();

    const upgraded = await open(url);
    expect(await sql(url, "SELECT version FROM numerous_tasks_schema")).toEqual([{ version: 9 }]);
    const [next] = await upgraded.saveAssigned([row(0, { id: "new", position: 0 })]);
    expect(next?.sequence).toBeGreaterThan(old);
    expect(next?.position).toBe(41);
    await final(upgraded, next?.sequence ?? 0);
    expect(view(await upgraded.changesSinceAll(0, 10))).toEqual([
      `inst-40@${old - 1}`,
      `new@${next?.sequence}`,
    ]);
    expect(view(await upgraded.changesSinceAll(old - 1, 10))).toEqual([`new@${next?.sequence}`]);
  });

  it("has exactly the declared instance columns, with their types, in the migrated table", async () => {
    const url = await database();
    await open(url);
    const table = await sql<{ column_name: string; data_type: string; is_nullable: string }>(
      url,
      `SELECT column_name, data_type, is_nullable FROM information_schema.columns
       WHERE table_schema = current_schema() AND table_name = 'instances' ORDER BY ordinal_position`,
    );
    expect(table.map((c) => [c.column_name, c.data_type, c.is_nullable === "YES"])).toEqual([
      ...INSTANCE_COLUMNS.map((c) => [c.name, c.postgres, c.nullable]),
      // The cluster's own: a stop asked of the row's owner (not a field of an instance).
      ["stop_requested", "boolean", false],
    ]);
  });

  it("refuses bad URLs, wrong passwords and unreachable servers with clear errors", async () => {
    const notPostgres = await openPostgresStore("mysql://u:secret@localhost/db").then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(notPostgres?.message).toMatch(/must start with postgres:\/\/ or postgresql:\/\//);
    expect(notPostgres?.message).not.toContain("secret");
    await expect(openPostgresStore("not a url")).rejects.toThrow(/not a URL/);

    const wrong = new URL(server.url);
    wrong.password = "wrong-password";
    const error = await openPostgresStore(wrong.href).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/password authentication failed for user "postgres"/);
    expect(error?.message).toContain(`postgres@127.0.0.1:${wrong.port}`);
    expect(error?.message).not.toContain("wrong-password");

    const nowhere = new URL(server.url);
    nowhere.port = "1";
    await expect(openPostgresStore(nowhere.href)).rejects.toThrow(
      `cannot open the task store postgres://postgres@127.0.0.1:1/`,
    );
  });

  it("rejects every call after close with a clear error, while events are subscribed", async () => {
    const store = await openPostgresStore(await database());
    const events = record(store);
    await store.listening();
    await store.close();
    await store.close();
    events.unsubscribe();
    await expect(store.save([row(1)])).rejects.toThrow(/closed/);
    await expect(store.saveAssigned([row(1)])).rejects.toThrow(/closed/);
    await expect(store.getMany(["inst-1"])).rejects.toThrow(/closed/);
    await expect(store.list({ deploymentId: "dep-a", limit: 1 })).rejects.toThrow(/closed/);
    await expect(store.changesSince("dep-a", 0, 1)).rejects.toThrow(/closed/);
    await expect(store.changesSinceAll(0, 1)).rejects.toThrow(/closed/);
    await expect(store.currentSequence()).rejects.toThrow(/closed/);
    await expect(store.unfinished()).rejects.toThrow(/closed/);
    await expect(store.counters()).rejects.toThrow(/closed/);
    await expect(store.listDefinitions("dep-a")).rejects.toThrow(/closed/);
    await expect(store.heartbeat("d", 1)).rejects.toThrow(/closed/);
    await expect(store.claim("d", 1)).rejects.toThrow(/closed/);
    await expect(store.cancelPending("inst-1")).rejects.toThrow(/closed/);
    await expect(store.reap(() => ({ name: "E", message: "m" }))).rejects.toThrow(/closed/);
    await expect(store.publish({ kind: "pending" })).rejects.toThrow(/closed/);
    expect(() => store.subscribe(() => {})).toThrow(/closed/);
  });
});
