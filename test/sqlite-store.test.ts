import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import {
  DATABASE_FILE,
  openSqliteStore,
  type SqliteStore,
} from "../executor-platform/store/sqlite/sqlite-store.js";
import { INSTANCE_COLUMNS } from "../executor-platform/store/instance-columns.js";
import type { StoredInstance } from "../executor-platform/store/store.js";

const projectRoot = fileURLToPath(new URL("..", import.meta.url));
const storeModule = fileURLToPath(
  new URL("../executor-platform/store/sqlite/sqlite-store.ts", import.meta.url),
);

const dirs: string[] = [];
const stores: SqliteStore[] = [];
const children: ChildProcess[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(`${os.tmpdir()}/nt-store-`);
  dirs.push(dir);
  return dir;
}

async function open(dir: string): Promise<SqliteStore> {
  const store = await openSqliteStore(dir);
  stores.push(store);
  return store;
}

afterEach(async () => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
  for (const store of stores.splice(0)) await store.close();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function row(n: number, overrides: Partial<StoredInstance> = {}): StoredInstance {
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

describe("SqliteStore", () => {
  it("round-trips every field, including undefined optional fields and error JSON", async () => {
    const store = await open(tempDir());
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
    const minimalError = row(3, { status: "failed", error: { name: "Error", message: "boom" } });
    await store.save([bare, full, minimalError]);

    expect(await store.get("dep-a", "inst-1")).toStrictEqual(bare);
    expect(await store.get("dep-a", "inst-2")).toStrictEqual(full);
    const got = await store.get("dep-a", "inst-3");
    expect(got).toStrictEqual(minimalError);
    expect(Object.keys(got?.error ?? {})).toEqual(["name", "message"]);
    expect(await store.get("dep-b", "inst-1")).toBeUndefined();
    expect(await store.get("dep-a", "missing")).toBeUndefined();
  });

  it("upserts idempotently and replaces whole rows", async () => {
    const store = await open(tempDir());
    await store.save([row(1), row(2)]);
    await store.save([row(1), row(2)]);
    const finished = row(1, {
      args: undefined,
      status: "completed",
      result: "42",
      progress: 1,
      finishedAt: 5,
      revision: 3,
      sequence: 3,
    });
    await store.save([finished]);
    await store.save([finished]);
    expect(await store.getMany(["inst-1", "inst-2"])).toStrictEqual([finished, row(2)]);
    expect(await store.list({ deploymentId: "dep-a", limit: 10 })).toHaveLength(2);
    expect(await store.counters()).toEqual({ sequence: 3, position: 2 });
  });

  it("saves definitions with the rows and upserts them by deployment and name", async () => {
    const store = await open(tempDir());
    await store.save(
      [],
      [
        { deploymentId: "dep-a", id: "t1", name: "resize", module: "/app/a.ts" },
        { deploymentId: "dep-a", id: "t2", name: "encode", module: "/app/a.ts" },
        { deploymentId: "dep-b", id: "t9", name: "resize", module: "/app/b.ts" },
      ],
    );
    await store.save([row(1)], [{ deploymentId: "dep-a", id: "t3", name: "resize", module: "/app/c.ts" }]);
    expect(await store.listDefinitions("dep-a")).toEqual([
      { deploymentId: "dep-a", id: "t2", name: "encode", module: "/app/a.ts" },
      { deploymentId: "dep-a", id: "t3", name: "resize", module: "/app/c.ts" },
    ]);
    expect(await store.listDefinitions("dep-b")).toHaveLength(1);
    expect(await store.listDefinitions("dep-c")).toEqual([]);
  });

  it("lists by position with task, status and deployment filters and pages by afterPosition", async () => {
    const store = await open(tempDir());
    const statuses = ["pending", "running", "completed", "failed", "cancelled"] as const;
    // Saved out of order so the ORDER BY, not insertion order, decides.
    const rows = Array.from({ length: 20 }, (_, i) =>
      row(20 - i, {
        status: statuses[(20 - i) % 5],
        taskId: (20 - i) % 2 === 0 ? "even-id" : "odd-id",
        taskName: (20 - i) % 2 === 0 ? "even" : "odd",
      }),
    );
    await store.save([...rows, row(100, { id: "other", deploymentId: "dep-b" })]);
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
    const store = await open(tempDir());
    await store.save([
      row(1, { sequence: 5 }),
      row(2, { sequence: 2 }),
      row(3, { sequence: 9 }),
      row(4, { sequence: 7, deploymentId: "dep-b" }),
    ]);
    const seqs = (list: StoredInstance[]) => list.map((r) => r.sequence);
    expect(seqs(await store.changesSince("dep-a", 0, 10))).toEqual([2, 5, 9]);
    expect(seqs(await store.changesSince("dep-a", 2, 10))).toEqual([5, 9]);
    expect(seqs(await store.changesSince("dep-a", 0, 2))).toEqual([2, 5]);
    expect(seqs(await store.changesSince("dep-a", 9, 10))).toEqual([]);
    expect(seqs(await store.changesSince("dep-b", 0, 10))).toEqual([7]);

    await store.save([row(2, { sequence: 10, revision: 2, status: "running" })]);
    expect((await store.changesSince("dep-a", 9, 10)).map((r) => [r.id, r.status])).toEqual([
      ["inst-2", "running"],
    ]);
  });

  it("returns pending and running rows of every deployment as unfinished, by position", async () => {
    const store = await open(tempDir());
    await store.save([
      row(5, { status: "running" }),
      row(1, { status: "completed" }),
      row(3, { status: "pending", deploymentId: "dep-b" }),
      row(2, { status: "pending" }),
      row(4, { status: "cancelled" }),
      row(6, { status: "failed" }),
    ]);
    expect((await store.unfinished()).map((r) => r.id)).toEqual(["inst-2", "inst-3", "inst-5"]);
  });

  it("gets many ids across chunks, leaving out missing ones", async () => {
    const store = await open(tempDir());
    const rows = Array.from({ length: 1_500 }, (_, i) =>
      row(i + 1, { deploymentId: i % 2 ? "dep-a" : "dep-b" }),
    );
    await store.save(rows);
    const ids = [...rows.map((r) => r.id).reverse(), "missing-1", "inst-7", "missing-2"];
    const got = await store.getMany(ids);
    expect(got).toHaveLength(1_500);
    expect(got.map((r) => r.id)).toEqual(rows.map((r) => r.id).reverse());
    expect(await store.getMany([])).toEqual([]);
    expect(await store.getMany(["missing"])).toEqual([]);
    expect((await store.getMany(["inst-3", "inst-1", "inst-2"])).map((r) => r.id)).toEqual([
      "inst-3",
      "inst-1",
      "inst-2",
    ]);
  });

  it("saves 20,000 rows in one batch quickly", async () => {
    const store = await open(tempDir());
    const rows = Array.from({ length: 20_000 }, (_, i) =>
      row(i + 1, {
        output: "x".repeat(50),
        error: i % 10 === 0 ? { name: "Error", message: "m" } : undefined,
      }),
    );
    const started = performance.now();
    await store.save(rows);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeLessThan(1_000);
    expect(await store.counters()).toEqual({ sequence: 20_000, position: 20_000 });
  });

  it("keeps rows and counters across close and reopen", async () => {
    const dir = tempDir();
    const first = await openSqliteStore(dir);
    expect(await first.counters()).toEqual({ sequence: 0, position: 0 });
    await first.save(
      [row(1, { sequence: 11 }), row(2, { sequence: 4 })],
      [{ deploymentId: "dep-a", id: "t1", name: "resize", module: "/app/tasks.ts" }],
    );
    await first.close();

    const second = await open(dir);
    expect(await second.counters()).toEqual({ sequence: 11, position: 2 });
    expect(await second.get("dep-a", "inst-1")).toStrictEqual(row(1, { sequence: 11 }));
    expect(await second.listDefinitions("dep-a")).toHaveLength(1);
  });

  it("has exactly the declared instance columns, with their types, in the migrated table", async () => {
    const dir = tempDir();
    await (await open(dir)).close();
    const db = new Database(path.join(dir, DATABASE_FILE), { readonly: true });
    try {
      const table = db.prepare("PRAGMA table_info(instances)").all() as Array<{
        name: string;
        type: string;
        notnull: number;
      }>;
      expect(table.map((c) => [c.name, c.type, c.notnull === 0])).toEqual(
        INSTANCE_COLUMNS.map((c) => [c.name, c.sqlite, c.nullable]),
      );
    } finally {
      db.close();
    }
  });

  it("creates a missing data directory", async () => {
    const dir = path.join(tempDir(), "a", "b");
    const store = await open(dir);
    await store.save([row(1)]);
    expect(fs.existsSync(path.join(dir, DATABASE_FILE))).toBe(true);
  });

  it("rejects every call after close with a clear error", async () => {
    const store = await openSqliteStore(tempDir());
    await store.close();
    await store.close();
    await expect(store.save([row(1)])).rejects.toThrow(/closed/);
    await expect(store.get("dep-a", "inst-1")).rejects.toThrow(/closed/);
    await expect(store.getMany(["inst-1"])).rejects.toThrow(/closed/);
    await expect(store.list({ deploymentId: "dep-a", limit: 1 })).rejects.toThrow(/closed/);
    await expect(store.changesSince("dep-a", 0, 1)).rejects.toThrow(/closed/);
    await expect(store.unfinished()).rejects.toThrow(/closed/);
    await expect(store.counters()).rejects.toThrow(/closed/);
    await expect(store.listDefinitions("dep-a")).rejects.toThrow(/closed/);
  });

  it("refuses a file that is not SQLite, naming the file", async () => {
    const dir = tempDir();
    const file = path.join(dir, DATABASE_FILE);
    fs.writeFileSync(
      file,
      "this is definitely not a database, just some text that is long enough\n".repeat(100),
    );
    const error = await openSqliteStore(dir).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(file);
    expect((error as Error).message).toContain("is not a numerous-tasks database");
    expect(fs.readdirSync(dir)).toEqual([DATABASE_FILE]);
  });

  it("refuses a file with an SQLite header but corrupt contents", async () => {
    const dir = tempDir();
    const file = path.join(dir, DATABASE_FILE);
    const garbage = Buffer.alloc(8192, 0xa5);
    garbage.write("SQLite format 3\0", 0, "latin1");
    fs.writeFileSync(file, garbage);
    await expect(openSqliteStore(dir)).rejects.toThrow(`${file} is not a numerous-tasks database`);
  });

  it("refuses a healthy SQLite database of another program", async () => {
    const dir = tempDir();
    const file = path.join(dir, DATABASE_FILE);
    const foreign = new Database(file);
    foreign.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)");
    foreign.close();
    await expect(openSqliteStore(dir)).rejects.toThrow(`${file} is not a numerous-tasks database`);
  });

  it("keeps saved rows when the saving process is killed with SIGKILL, while another process shares the store", async () => {
    const dir = tempDir();
    const script = path.join(dir, "child.mjs");
    fs.writeFileSync(
      script,
      `import { openSqliteStore } from ${JSON.stringify(pathToFileURL(storeModule).href)};
const store = await openSqliteStore(process.argv[2]);
const rows = [];
for (let n = 1; n <= 500; n++) {
  rows.push({
    id: "child-" + n, deploymentId: "dep-a", taskId: "t", taskName: "resize", module: "/app/tasks.ts",
    args: undefined, status: n % 2 ? "completed" : "running", progress: 1, output: undefined,
    result: JSON.stringify(n), error: undefined, createdAt: n, startedAt: n, finishedAt: undefined,
    revision: 2, sequence: n, position: n, owner: "child",
  });
}
await store.save(rows.slice(0, 250));
await store.save(rows.slice(250), [{ deploymentId: "dep-a", id: "t", name: "resize", module: "/app/tasks.ts" }]);
process.stdout.write("saved\\n");
setInterval(() => {}, 1 << 30);
`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script, dir], {
      cwd: projectRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    await new Promise<void>((resolve, reject) => {
      let stdout = "";
      let stderr = "";
      child.stdout?.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes("saved\n")) resolve();
      });
      child.stderr?.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      child.once("error", reject);
      child.once("exit", (code, signal) =>
        reject(new Error(`child exited (${code ?? signal}) before saving:\n${stdout}\n${stderr}`)),
      );
    });

    // A second process's store on the same directory, while the child still holds its own open.
    const shared = await open(dir);
    expect(await shared.counters()).toEqual({ sequence: 500, position: 500 });
    await shared.save([row(501, { id: "parent-1" })]);

    child.kill("SIGKILL");
    await exited;
    expect(child.signalCode).toBe("SIGKILL");
    await shared.close();

    const reopened = await open(dir);
    expect(await reopened.counters()).toEqual({ sequence: 501, position: 501 });
    const all = await reopened.list({ deploymentId: "dep-a", limit: 1_000 });
    expect(all).toHaveLength(501);
    expect(all[499]).toMatchObject({ id: "child-500", result: "500", owner: "child", status: "running" });
    expect(all[0]).toMatchObject({ id: "child-1", args: undefined, finishedAt: undefined });
    expect(all[500]?.id).toBe("parent-1");
    expect((await reopened.unfinished()).map((r) => r.id)).toHaveLength(251);
    expect(await reopened.listDefinitions("dep-a")).toHaveLength(1);
  });
});
