/**
 * The store contract: what the daemon relies on from any {@link Store}, whichever database keeps
 * the rows. Every store's test file calls {@link describeStoreContract} once; what only one
 * store does (files and processes for SQLite, claims, leases and events for PostgreSQL) stays
 * in that store's file.
 *
 * Sequences: the suite saves rows with the sequences a single daemon gives them, the next ones
 * after `counters()` in batch order. A store that assigns sequences itself (PostgreSQL: one per
 * transaction, shared by all its rows) resolves the rows as it stored them, and the suite
 * expects those; it shows a change once it is final, which the suite waits for.
 */
import { afterEach, describe, expect, it } from "vitest";
import { isClusterStore } from "../executor-platform/store/cluster-store.js";
import {
  runFields,
  type Store,
  type StoredDefinition,
  type StoredInstance,
} from "../executor-platform/store/store.js";

/** What the factory hands the suite: a store on a new, empty database, and a way back to it. */
export interface StoreContractHandle {
  readonly store: Store;
  /** Opens the same database again (the suite has closed `store` by then). */
  reopen(): Promise<Store>;
}

/**
 * An instance row as a test writes it: instance `inst-<n>` of task `resize` in deployment
 * `dep-a`, pending, at position and sequence `n`.
 */
export function storedRow(n: number, overrides: Partial<StoredInstance> = {}): StoredInstance {
  return {
    id: `inst-${n}`,
    deploymentId: "dep-a",
    taskId: "task-id-1",
    taskName: "resize",
    module: "/app/tasks.ts",
    args: `[${n}]`,
    status: "pending",
    progress: 0,
    output: undefined,
    result: undefined,
    error: undefined,
    createdAt: 1_700_000_000_000 + n,
    startedAt: undefined,
    finishedAt: undefined,
    revision: 1,
    sequence: n,
    position: n,
    owner: "",
    ...runFields(undefined),
    traceContext: undefined,
    ...overrides,
  };
}

/**
 * Saves `rows` with the next sequences, in order, as a daemon would; resolves them as saved once
 * the change is final (readable by `changesSince`).
 */
async function save(
  store: Store,
  rows: readonly StoredInstance[],
  definitions?: readonly StoredDefinition[],
): Promise<StoredInstance[]> {
  if (isClusterStore(store)) {
    const stored = await store.saveAssigned(rows, definitions);
    const sequence = Math.max(0, ...stored.map((row) => row.sequence));
    const deadline = Date.now() + 10_000;
    while ((await store.currentSequence()) < sequence) {
      if (Date.now() > deadline) throw new Error(`sequence ${sequence} did not become final within 10 s`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return stored;
  }
  let { sequence } = await store.counters();
  const stamped = rows.map((row) => ({ ...row, sequence: ++sequence }));
  await store.save(stamped, definitions);
  return stamped;
}

/**
 * `counters()` continues after everything stored: exactly at `sequence` for a store that is given
 * its sequences, at least at it for one that numbers transactions of a whole database server.
 */
async function expectCounters(store: Store, sequence: number, position: number): Promise<void> {
  const counters = await store.counters();
  expect(counters.position).toBe(position);
  if (isClusterStore(store)) expect(counters.sequence).toBeGreaterThanOrEqual(sequence);
  else expect(counters.sequence).toBe(sequence);
}

const ids = (list: readonly StoredInstance[]) => list.map((r) => r.id);

/**
 * Declares the contract suite for one store.
 * @param name shown in the suite's title.
 * @param openStore called once per test. The suite closes every store it gets (closing twice
 *   must be harmless); the caller removes the database afterwards.
 */
export function describeStoreContract(name: string, openStore: () => Promise<StoreContractHandle>): void {
  describe(`store contract: ${name}`, () => {
    const opened: Store[] = [];

    async function fresh(): Promise<StoreContractHandle> {
      const handle = await openStore();
      opened.push(handle.store);
      return {
        store: handle.store,
        reopen: async () => {
          const store = await handle.reopen();
          opened.push(store);
          return store;
        },
      };
    }

    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close();
    });

    it("round-trips every field, including undefined optional fields and error JSON", async () => {
      const { store } = await fresh();
      const bare = storedRow(1);
      const full = storedRow(2, {
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
        traceContext: '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}',
      });
      const minimalError = storedRow(3, {
        status: "failed",
        error: { name: "Error", message: "boom" },
        args: "ünïcödé ✓ \\ \" ' {}",
      });
      // Saved with their own sequences 1, 2, 3 (or the store's).
      const saved = await save(store, [bare, full, minimalError]);
      expect(saved.map(({ sequence: _, ...rest }) => rest)).toStrictEqual(
        [bare, full, minimalError].map(({ sequence: _, ...rest }) => rest),
      );

      const got = await store.getMany(["inst-1", "inst-2", "inst-3", "missing"]);
      expect(got).toStrictEqual(saved);
      expect(Object.keys(got[2]?.error ?? {})).toEqual(["name", "message"]);
      // Rows belong to their deployment.
      expect(await store.list({ deploymentId: "dep-b", limit: 10 })).toEqual([]);
    });

    it("upserts idempotently and replaces whole rows", async () => {
      const { store } = await fresh();
      await save(store, [storedRow(1), storedRow(2)]);
      const [, second] = await save(store, [storedRow(1), storedRow(2)]);
      const finished = storedRow(1, {
        args: undefined,
        status: "completed",
        result: "42",
        progress: 1,
        finishedAt: 5,
        revision: 3,
      });
      await save(store, [finished]);
      const [last] = await save(store, [finished]);
      expect(await store.getMany(["inst-1", "inst-2"])).toStrictEqual([last, second]);
      expect(last).toStrictEqual({ ...finished, sequence: last?.sequence });
      expect(second).toStrictEqual({ ...storedRow(2), sequence: second?.sequence });
      expect(await store.list({ deploymentId: "dep-a", limit: 10 })).toHaveLength(2);
      // A single daemon numbered 6 rows: inst-1 was the last.
      await expectCounters(store, last?.sequence ?? 0, 2);
    });

    it("saves definitions with the rows and upserts them by deployment and name", async () => {
      const { store } = await fresh();
      await store.save(
        [],
        [
          { deploymentId: "dep-a", id: "t1", name: "resize", module: "/app/a.ts" },
          { deploymentId: "dep-a", id: "t2", name: "encode", module: "/app/a.ts" },
          { deploymentId: "dep-b", id: "t9", name: "resize", module: "/app/b.ts" },
        ],
      );
      // Definitions alone are no change to an instance.
      await expectCounters(store, 0, 0);
      expect(await store.changesSince("dep-a", 0, 10)).toEqual([]);
      await save(
        store,
        [storedRow(1)],
        [{ deploymentId: "dep-a", id: "t3", name: "resize", module: "/app/c.ts" }],
      );
      expect(await store.listDefinitions("dep-a")).toEqual([
        { deploymentId: "dep-a", id: "t2", name: "encode", module: "/app/a.ts" },
        { deploymentId: "dep-a", id: "t3", name: "resize", module: "/app/c.ts" },
      ]);
      expect(await store.listDefinitions("dep-b")).toHaveLength(1);
      expect(await store.listDefinitions("dep-c")).toEqual([]);
    });

    it("lists by position with task, status and deployment filters and pages by afterPosition", async () => {
      const { store } = await fresh();
      const statuses = ["pending", "running", "completed", "failed", "cancelled"] as const;
      // Saved out of order so the ORDER BY, not insertion order, decides.
      const rows = Array.from({ length: 20 }, (_, i) =>
        storedRow(20 - i, {
          status: statuses[(20 - i) % 5],
          taskId: (20 - i) % 2 === 0 ? "even-id" : "odd-id",
          taskName: (20 - i) % 2 === 0 ? "even" : "odd",
        }),
      );
      await save(store, [...rows, storedRow(100, { id: "other", deploymentId: "dep-b" })]);
      const positions = (list: StoredInstance[]) => list.map((r) => r.position);

      expect(positions(await store.list({ deploymentId: "dep-a", limit: 100 }))).toEqual(
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      expect(positions(await store.list({ deploymentId: "dep-a", limit: 3 }))).toEqual([1, 2, 3]);
      expect(positions(await store.list({ deploymentId: "dep-a", afterPosition: 3, limit: 3 }))).toEqual([
        4, 5, 6,
      ]);
      expect(positions(await store.list({ deploymentId: "dep-a", afterPosition: 20, limit: 3 }))).toEqual([]);
      expect(positions(await store.list({ deploymentId: "dep-a", task: "even", limit: 4 }))).toEqual([
        2, 4, 6, 8,
      ]);
      expect(positions(await store.list({ deploymentId: "dep-a", task: "odd-id", limit: 3 }))).toEqual([
        1, 3, 5,
      ]);
      expect(positions(await store.list({ deploymentId: "dep-a", task: "nope", limit: 3 }))).toEqual([]);
      expect(
        positions(await store.list({ deploymentId: "dep-a", statuses: ["pending", "failed"], limit: 100 })),
      ).toEqual([3, 5, 8, 10, 13, 15, 18, 20]);
      expect(
        positions(
          await store.list({
            deploymentId: "dep-a",
            task: "even",
            statuses: ["pending", "failed"],
            afterPosition: 8,
            limit: 2,
          }),
        ),
      ).toEqual([10, 18]);
      expect(await store.list({ deploymentId: "dep-a", statuses: [], limit: 100 })).toEqual([]);
      expect(await store.list({ deploymentId: "dep-a", limit: 0 })).toEqual([]);
      expect(positions(await store.list({ deploymentId: "dep-b", limit: 100 }))).toEqual([100]);
    });

    it("counts a deployment's instances by status and its finished ones per minute (the console's overview)", async () => {
      const { store } = await fresh();
      const minute = 1_700_000_040_000; // a whole minute
      const finished = (n: number, status: "completed" | "failed" | "cancelled", at: number) =>
        storedRow(n, { status, finishedAt: at, startedAt: at - 1 });
      await save(store, [
        storedRow(1),
        storedRow(2, { status: "running" }),
        finished(3, "completed", minute - 1), // the minute before `since`: left out
        finished(4, "completed", minute),
        finished(5, "completed", minute + 59_999),
        finished(6, "failed", minute + 30_000),
        finished(7, "cancelled", minute + 60_000),
        storedRow(8, { id: "other-dep", deploymentId: "dep-b", status: "completed", finishedAt: minute }),
      ]);
      expect(await store.statusCounts("dep-a")).toEqual({
        pending: 1,
        running: 1,
        completed: 3,
        failed: 1,
        cancelled: 1,
      });
      expect(await store.statusCounts("dep-none")).toEqual({});
      const perMinute = await store.finishedPerMinute("dep-a", minute);
      expect(perMinute.sort((a, b) => a.minute - b.minute || a.status.localeCompare(b.status))).toEqual([
        { minute, status: "completed", count: 2 },
        { minute, status: "failed", count: 1 },
        { minute: minute + 60_000, status: "cancelled", count: 1 },
      ]);
    });

    it("keeps the overview's counts right as instances change status, end, and are deleted, across a reopen", async () => {
      const { store, reopen } = await fresh();
      const minute = 1_700_000_040_000;
      const since = minute - 60_000;
      const view = async (s: Store) => ({
        counts: await s.statusCounts("dep-a"),
        perMinute: (await s.finishedPerMinute("dep-a", since)).sort(
          (a, b) => a.minute - b.minute || a.status.localeCompare(b.status),
        ),
      });
      await save(store, [storedRow(1), storedRow(2), storedRow(3), storedRow(9, { deploymentId: "dep-b" })]);
      expect(await view(store)).toEqual({ counts: { pending: 3 }, perMinute: [] });
      const running = { status: "running" as const, startedAt: minute - 10, revision: 2 };
      await save(store, [storedRow(1, running), storedRow(2, running)]);
      // Progress only: no status changes.
      await save(store, [storedRow(1, { ...running, progress: 0.5, revision: 3 })]);
      expect(await view(store)).toEqual({ counts: { pending: 1, running: 2 }, perMinute: [] });
      await save(store, [
        storedRow(1, { ...running, status: "completed", finishedAt: minute + 5, revision: 4 }),
        storedRow(2, { ...running, status: "failed", finishedAt: minute + 60_000, revision: 3 }),
        storedRow(3, { status: "cancelled", finishedAt: minute + 7, revision: 2 }),
      ]);
      const ended = {
        counts: { completed: 1, failed: 1, cancelled: 1 },
        perMinute: [
          { minute, status: "cancelled", count: 1 },
          { minute, status: "completed", count: 1 },
          { minute: minute + 60_000, status: "failed", count: 1 },
        ],
      };
      expect(await view(store)).toEqual(ended);
      expect(await store.statusCounts("dep-b")).toEqual({ pending: 1 });

      await store.close();
      const again = await reopen();
      expect(await view(again)).toEqual(ended);
      // Retention deletes the two that ended in the first minute.
      expect(await again.deleteFinished(minute + 60_000, 10)).toBe(2);
      expect(await view(again)).toEqual({
        counts: { failed: 1 },
        perMinute: [{ minute: minute + 60_000, status: "failed", count: 1 }],
      });
      await save(again, [storedRow(4)]);
      expect(await again.statusCounts("dep-a")).toEqual({ pending: 1, failed: 1 });
    });

    it("returns changes since a sequence, by sequence, scoped to the deployment", async () => {
      const { store } = await fresh();
      // One save each, so every store gives them increasing sequences: inst-3, inst-1, inst-4 (dep-b), inst-2.
      const [s3, s1, s4, s2] = [
        ...(await save(store, [storedRow(3)])),
        ...(await save(store, [storedRow(1)])),
        ...(await save(store, [storedRow(4, { deploymentId: "dep-b" })])),
        ...(await save(store, [storedRow(2)])),
      ].map((row) => row.sequence) as [number, number, number, number];
      expect(s3 < s1 && s1 < s4 && s4 < s2).toBe(true);
      const view = (list: StoredInstance[]) => list.map((r) => `${r.id}@${r.sequence}`);
      expect(view(await store.changesSince("dep-a", 0, 10))).toEqual([
        `inst-3@${s3}`,
        `inst-1@${s1}`,
        `inst-2@${s2}`,
      ]);
      expect(view(await store.changesSince("dep-a", s3, 10))).toEqual([`inst-1@${s1}`, `inst-2@${s2}`]);
      expect(view(await store.changesSince("dep-a", 0, 2))).toEqual([`inst-3@${s3}`, `inst-1@${s1}`]);
      expect(view(await store.changesSince("dep-a", s2, 10))).toEqual([]);
      expect(view(await store.changesSince("dep-b", 0, 10))).toEqual([`inst-4@${s4}`]);
      expect(await store.changesSince("dep-a", 0, 0)).toEqual([]);

      const [changed] = await save(store, [storedRow(3, { revision: 2, status: "running" })]);
      expect(changed?.sequence).toBeGreaterThan(s2);
      expect((await store.changesSince("dep-a", s2, 10)).map((r) => [r.id, r.status, r.sequence])).toEqual([
        ["inst-3", "running", changed?.sequence],
      ]);
    });

    it("never splits the rows of one sequence across pages", async () => {
      const { store } = await fresh();
      const saved = await save(store, [storedRow(1), storedRow(2), storedRow(3)]);
      const last = Math.max(...saved.map((row) => row.sequence));
      // Paging one row at a time reads every row once, in order, whatever the store numbers.
      const seen: string[] = [];
      let after = 0;
      for (;;) {
        const page = await store.changesSince("dep-a", after, 1);
        if (page.length === 0) break;
        const end = (page.at(-1) as StoredInstance).sequence;
        // A page ends at a sequence's last row: nothing of `end` is left for the next one.
        expect(page.filter((row) => row.sequence === end)).toHaveLength(
          saved.filter((row) => row.sequence === end).length,
        );
        seen.push(...ids(page));
        after = end;
      }
      expect(seen.sort()).toEqual(["inst-1", "inst-2", "inst-3"]);
      expect(after).toBe(last);
    });

    it("returns pending and running rows of every deployment as unfinished, by position", async () => {
      const { store } = await fresh();
      await save(store, [
        storedRow(5, { status: "running", owner: "d1" }),
        storedRow(1, { status: "completed" }),
        storedRow(3, { status: "pending", deploymentId: "dep-b" }),
        storedRow(2, { status: "pending" }),
        storedRow(4, { status: "cancelled" }),
        storedRow(6, { status: "failed" }),
      ]);
      expect(ids(await store.unfinished())).toEqual(["inst-2", "inst-3", "inst-5"]);
    });

    it("gets many ids across chunks, leaving out missing ones", async () => {
      const { store } = await fresh();
      // More than one chunk of ids in every store (SQLite asks 512 at a time, PostgreSQL 10,000).
      const rows = Array.from({ length: 12_000 }, (_, i) =>
        storedRow(i + 1, { deploymentId: i % 2 ? "dep-a" : "dep-b" }),
      );
      await save(store, rows);
      const wanted = [...ids(rows).reverse(), "missing-1", "inst-7", "missing-2"];
      const got = await store.getMany(wanted);
      expect(got).toHaveLength(12_000);
      expect(ids(got)).toEqual(ids(rows).reverse());
      expect(await store.getMany([])).toEqual([]);
      expect(await store.getMany(["missing"])).toEqual([]);
      expect(ids(await store.getMany(["inst-3", "inst-1", "inst-2"]))).toEqual([
        "inst-3",
        "inst-1",
        "inst-2",
      ]);
    });

    it("saves 20,000 rows in one batch", async () => {
      const { store } = await fresh();
      const rows = Array.from({ length: 20_000 }, (_, i) =>
        storedRow(i + 1, {
          output: "x".repeat(50),
          error: i % 10 === 0 ? { name: "Error", message: "m" } : undefined,
        }),
      );
      const saved = await save(store, rows);
      await expectCounters(store, saved.at(-1)?.sequence ?? 0, 20_000);
      expect(await store.getMany(["inst-1", "inst-11", "inst-20000"])).toStrictEqual([
        saved[0],
        saved[10],
        saved[19_999],
      ]);
      expect(await store.list({ deploymentId: "dep-a", afterPosition: 19_990, limit: 100 })).toStrictEqual(
        saved.slice(19_990),
      );
    });

    it("keeps rows and counters across close and reopen", async () => {
      const { store: first, reopen } = await fresh();
      await expectCounters(first, 0, 0);
      const saved = await save(
        first,
        [storedRow(1), storedRow(2)],
        [{ deploymentId: "dep-a", id: "t1", name: "resize", module: "/app/tasks.ts" }],
      );
      await first.close();

      const second = await reopen();
      await expectCounters(second, saved.at(-1)?.sequence ?? 0, 2);
      expect(await second.getMany(["inst-1"])).toStrictEqual([saved[0]]);
      expect(await second.listDefinitions("dep-a")).toHaveLength(1);
    });

    it("appends, rewrites and deletes log chunks in order, and deletes an instance's logs with it", async () => {
      const { store } = await fresh();
      await save(store, [storedRow(1, { status: "completed", finishedAt: 1_000 }), storedRow(2)]);
      const chunk = (instanceId: string, line: string) => ({
        instanceId,
        lines: JSON.stringify([[1_700_000_000_000, 0, line]]),
        lineCount: 1,
      });
      const [a, b, c] = await store.writeLogs({
        append: [
          chunk("inst-1", "one"),
          { instanceId: "inst-1", lines: "[]", lineCount: 0 },
          chunk("inst-2", "two"),
        ],
        rewrite: [],
        remove: [],
      });
      expect(a !== undefined && b !== undefined && c !== undefined && a < b && b < c).toBe(true);
      const [d] = await store.writeLogs({
        append: [chunk("inst-1", "three")],
        rewrite: [{ chunk: b as number, ...chunk("inst-1", "between") }],
        remove: [a as number],
      });
      const between = { chunk: b, ...chunk("inst-1", "between") };
      const three = { chunk: d, ...chunk("inst-1", "three") };
      expect(await store.readLogs("inst-1", 0, 10)).toEqual([between, three]);
      expect(await store.readLogs("inst-1", b as number, 10)).toEqual([three]);
      expect(await store.readLogs("inst-1", 0, 1)).toEqual([between]);
      expect(await store.readLogsBackward("inst-1", Number.MAX_SAFE_INTEGER, 1)).toEqual([three]);
      expect(await store.readLogsBackward("inst-1", d as number, 10)).toEqual([between]);
      expect(await store.readLogs("missing", 0, 10)).toEqual([]);

      // Retention takes the finished instance's logs with it, and leaves the others'.
      expect(await store.deleteFinished(2_000, 10)).toBe(1);
      expect(await store.readLogs("inst-1", 0, 10)).toEqual([]);
      expect(await store.readLogs("inst-2", 0, 10)).toEqual([{ chunk: c, ...chunk("inst-2", "two") }]);
      await store.close();
      await expect(store.readLogs("inst-2", 0, 1)).rejects.toThrow(/closed/);
      await expect(store.writeLogs({ append: [], rewrite: [], remove: [1] })).rejects.toThrow(/closed/);
    });

    it("rejects every call after close with a clear error", async () => {
      const { store } = await fresh();
      await store.close();
      await store.close();
      await expect(store.save([storedRow(1)])).rejects.toThrow(/closed/);
      await expect(store.getMany(["inst-1"])).rejects.toThrow(/closed/);
      await expect(store.list({ deploymentId: "dep-a", limit: 1 })).rejects.toThrow(/closed/);
      await expect(store.changesSince("dep-a", 0, 1)).rejects.toThrow(/closed/);
      await expect(store.unfinished()).rejects.toThrow(/closed/);
      await expect(store.counters()).rejects.toThrow(/closed/);
      await expect(store.listDefinitions("dep-a")).rejects.toThrow(/closed/);
    });
  });
}
