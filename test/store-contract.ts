/**
 * The store contract: what the daemon relies on from any {@link Store}, whichever database keeps
 * the rows. Every store's test file calls {@link describeStoreContract} once; what only one
 * store does (files and processes for SQLite, claims, leases and events for PostgreSQL) stays
 * in that store's file.
 *
 * Sequences: the suite saves rows with the sequences a single daemon gives them, the next ones
 * after `counters()` in batch order. A store that assigns sequences itself (PostgreSQL) does so
 * by the same rule, so every store ends up holding the same rows.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Store, StoredDefinition, StoredInstance } from "../executor-platform/store/store.js";

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
    ...overrides,
  };
}

/** Saves `rows` with the next sequences, in order, as a daemon would; resolves them as saved. */
async function save(
  store: Store,
  rows: readonly StoredInstance[],
  definitions?: readonly StoredDefinition[],
): Promise<StoredInstance[]> {
  let { sequence } = await store.counters();
  const stamped = rows.map((row) => ({ ...row, sequence: ++sequence }));
  await store.save(stamped, definitions);
  return stamped;
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
      });
      const minimalError = storedRow(3, {
        status: "failed",
        error: { name: "Error", message: "boom" },
        args: "ünïcödé ✓ \\ \" ' {}",
      });
      // Saved with their own sequences 1, 2, 3.
      await save(store, [bare, full, minimalError]);

      const got = await store.getMany(["inst-1", "inst-2", "inst-3", "missing"]);
      expect(got).toStrictEqual([bare, full, minimalError]);
      expect(Object.keys(got[2]?.error ?? {})).toEqual(["name", "message"]);
      // Rows belong to their deployment.
      expect(await store.list({ deploymentId: "dep-b", limit: 10 })).toEqual([]);
    });

    it("upserts idempotently and replaces whole rows", async () => {
      const { store } = await fresh();
      await save(store, [storedRow(1), storedRow(2)]);
      await save(store, [storedRow(1), storedRow(2)]);
      const finished = storedRow(1, {
        args: undefined,
        status: "completed",
        result: "42",
        progress: 1,
        finishedAt: 5,
        revision: 3,
      });
      await save(store, [finished]);
      await save(store, [finished]);
      expect(await store.getMany(["inst-1", "inst-2"])).toStrictEqual([
        { ...finished, sequence: 6 },
        { ...storedRow(2), sequence: 4 },
      ]);
      expect(await store.list({ deploymentId: "dep-a", limit: 10 })).toHaveLength(2);
      expect(await store.counters()).toEqual({ sequence: 6, position: 2 });
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
      expect(await store.counters()).toEqual({ sequence: 0, position: 0 });
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

    it("returns changes since a sequence, by sequence, scoped to the deployment", async () => {
      const { store } = await fresh();
      // Sequences follow the order of the batch: inst-3, inst-1, inst-4 (dep-b), inst-2.
      await save(store, [storedRow(3), storedRow(1), storedRow(4, { deploymentId: "dep-b" }), storedRow(2)]);
      const view = (list: StoredInstance[]) => list.map((r) => `${r.id}@${r.sequence}`);
      expect(view(await store.changesSince("dep-a", 0, 10))).toEqual(["inst-3@1", "inst-1@2", "inst-2@4"]);
      expect(view(await store.changesSince("dep-a", 1, 10))).toEqual(["inst-1@2", "inst-2@4"]);
      expect(view(await store.changesSince("dep-a", 0, 2))).toEqual(["inst-3@1", "inst-1@2"]);
      expect(view(await store.changesSince("dep-a", 4, 10))).toEqual([]);
      expect(view(await store.changesSince("dep-b", 0, 10))).toEqual(["inst-4@3"]);
      expect(await store.changesSince("dep-a", 0, 0)).toEqual([]);

      await save(store, [storedRow(3, { revision: 2, status: "running" })]);
      expect((await store.changesSince("dep-a", 4, 10)).map((r) => [r.id, r.status, r.sequence])).toEqual([
        ["inst-3", "running", 5],
      ]);
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
      expect(await store.counters()).toEqual({ sequence: 20_000, position: 20_000 });
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
      expect(await first.counters()).toEqual({ sequence: 0, position: 0 });
      const saved = await save(
        first,
        [storedRow(1), storedRow(2)],
        [{ deploymentId: "dep-a", id: "t1", name: "resize", module: "/app/tasks.ts" }],
      );
      await first.close();

      const second = await reopen();
      expect(await second.counters()).toEqual({ sequence: 2, position: 2 });
      expect(await second.getMany(["inst-1"])).toStrictEqual([saved[0]]);
      expect(await second.listDefinitions("dep-a")).toHaveLength(1);
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
