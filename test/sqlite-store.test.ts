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
import { pollUntil } from "./helpers/deadline.js";
import { describeStoreContract, storedRow as row } from "./store-contract.js";

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

describeStoreContract("SQLite", async () => {
  const dir = tempDir();
  return { store: await openSqliteStore(dir), reopen: () => openSqliteStore(dir) };
});

describe("SqliteStore", () => {
  it("counts what a database from before the overview's counts holds when it is first opened", async () => {
    const dir = tempDir();
    const first = await open(dir);
    const minute = 1_700_000_040_000;
    await first.save([
      row(1),
      row(2, { status: "completed", finishedAt: minute + 1 }),
      row(3, { status: "completed", finishedAt: minute + 2 }),
      row(4, { status: "failed", finishedAt: minute + 60_001, deploymentId: "dep-b" }),
    ]);
    await first.close();
    // The schema as the version before them left it.
    const db = new Database(path.join(dir, DATABASE_FILE));
    const version = Number(db.pragma("user_version", { simple: true }));
    db.exec("DROP TABLE status_counts; DROP TABLE finished_counts");
    db.pragma(`user_version = ${version - 1}`);
    db.close();

    const second = await open(dir);
    expect(await second.statusCounts("dep-a")).toEqual({ pending: 1, completed: 2 });
    expect(await second.finishedPerMinute("dep-a", minute)).toEqual([
      { minute, status: "completed", count: 2 },
    ]);
    expect(await second.finishedPerMinute("dep-b", minute)).toEqual([
      { minute: minute + 60_000, status: "failed", count: 1 },
    ]);
    await second.save([row(1, { status: "running", revision: 2 })]);
    expect(await second.statusCounts("dep-a")).toEqual({ running: 1, completed: 2 });
  });

  it("keeps the sequences it is given: changes come by sequence, not by insertion, and counters at the highest", async () => {
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
    expect(await store.counters()).toEqual({ sequence: 9, position: 4 });

    await store.save([row(2, { sequence: 10, revision: 2, status: "running" })]);
    expect((await store.changesSince("dep-a", 9, 10)).map((r) => [r.id, r.status])).toEqual([
      ["inst-2", "running"],
    ]);
    expect(await store.counters()).toEqual({ sequence: 10, position: 4 });
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

  it("moves its write-ahead log into the database file off the event loop, and leaves no log at close", async () => {
    // SQLite's own checkpoint waits for 1,000 pages of log; these commits make far fewer. They
    // reach the database file while the store is open only through the checkpoint thread.
    const dir = tempDir();
    const store = await openSqliteStore(dir);
    const file = path.join(dir, DATABASE_FILE);
    const before = fs.statSync(file).size;
    for (let i = 1; i <= 100; i++) await store.save([row(i, { output: `J"${"x".repeat(2_000)}"` })]);
    await pollUntil(
      () => fs.statSync(file).size > before,
      "the log to be checkpointed into the database file",
    );
    await store.close();
    expect(fs.existsSync(`${file}-wal`), "the log left at close").toBe(false);
  });

  it("creates a missing data directory", async () => {
    const dir = path.join(tempDir(), "a", "b");
    const store = await open(dir);
    await store.save([row(1)]);
    expect(fs.existsSync(path.join(dir, DATABASE_FILE))).toBe(true);
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
    revision: 2, sequence: n, position: n, owner: "child", spec: undefined, priority: 0, readyAt: 0,
    attempt: 1, maxAttempts: 1, attempts: undefined, concurrencyLimit: 0, perKeyLimit: 0,
    concurrencyKey: undefined,
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
