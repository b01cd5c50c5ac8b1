/**
 * The package as users get it. `npm pack` runs in a copy of the repository (its prepack wipes
 * and rebuilds dist/, which must not happen under the other test files that run the repo's
 * build), the tarball is installed into a scratch app outside the repository, and that app is
 * run as the README tells a new user: plain `node` on the local executor, then against a daemon
 * started in the app's folder with `npx numerous-executor serve`.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import {
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** What a fresh clone does not have, so the copy is packed as CI's clone would be. */
const NOT_COPIED = new Set(["node_modules", "dist", ".git", ".data", ".numerous-tasks", "coverage"]);
const NPM_STEP_MS = 300_000;
const BIN = "dist/executor-platform/cli/cli.js";

const execFileAsync = promisify(execFile);

/** The caller's environment without this project's settings or the outer npm run's package. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(NUMEROUS_|TASK_DATA_INPUT$|npm_package_|npm_lifecycle_|npm_command$)/.test(key)) continue;
    if (key === "npm_config_local_prefix") continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

/** Runs a command to its end; rejects with its output when it fails or outlives `timeoutMs`. */
async function run(
  command: string,
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv = userEnv(),
  timeoutMs = 60_000,
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, {
      cwd,
      env,
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(
      `${command} ${args.join(" ")} (in ${cwd}) failed: ${(error as Error).message}\n${stdout ?? ""}\n${stderr ?? ""}`,
    );
  }
}

interface PackedFile {
  readonly path: string;
  readonly mode: number;
}

/** Packs a copy of the repository as `npm pack` would in a fresh clone; its prepack builds. */
async function packCopy(work: string): Promise<{ tarball: string; files: PackedFile[] }> {
  const source = join(work, "source");
  cpSync(ROOT, source, {
    recursive: true,
    filter: (from) => !NOT_COPIED.has(relative(ROOT, from)),
  });
  symlinkSync(realpathSync(join(ROOT, "node_modules")), join(source, "node_modules"), "dir");
  // Left by a source file that has since moved: a clean prepack must not ship it.
  mkdirSync(join(source, "dist", "moved-away"), { recursive: true });
  writeFileSync(join(source, "dist", "moved-away", "old.js"), "export {};\n");
  const stdout = await run(
    "npm",
    ["pack", "--json", "--pack-destination", work],
    source,
    userEnv(),
    NPM_STEP_MS,
  );
  const [result] = JSON.parse(stdout) as Array<{ filename: string; files: PackedFile[] }>;
  if (result === undefined) throw new Error(`npm pack printed no package: ${stdout}`);
  return { tarball: join(work, result.filename), files: result.files };
}

/** A user's app: a task module and a main that runs the task and prints what it got. */
function writeScratchApp(app: string): void {
  writeFileSync(
    join(app, "package.json"),
    `${JSON.stringify({ name: "scratch-app", private: true, type: "module" }, null, 2)}\n`,
  );
  writeFileSync(
    join(app, "tasks.mjs"),
    `import { getTaskController, task } from "numerous-tasks";

export const compute = task(function compute(x) {
  const controller = getTaskController();
  controller.setProgress(1);
  // Set by the daemon in the workload it starts for an instance; absent when run in-process.
  controller.setOutput({ ranAs: process.env.NUMEROUS_TASK_INSTANCE_ID ?? "in-process" });
  return x + 1;
});
`,
  );
  writeFileSync(
    join(app, "main.mjs"),
    `import { waitForCompletion } from "numerous-tasks";
import { compute } from "./tasks.mjs";

const instance = compute(5);
const result = await waitForCompletion(instance);
console.log(JSON.stringify({ id: instance.id, status: instance.status, result, output: instance.output }));
`,
  );
}

/**
 * `npm install <tarball>` from the npm cache when it can (the repo's `npm ci` filled it with
 * every tarball; the registry's package documents may still be missing), else online. Install
 * scripts are skipped: the only one that matters compiles better-sqlite3, minutes on a small
 * machine, and the repo's own `npm ci` has already built that same pinned version for this
 * Node.js, so its binary is copied in instead. Everything else is what a user gets.
 */
async function installTarball(app: string, tarball: string): Promise<void> {
  const args = ["install", "--ignore-scripts", "--no-audit", "--no-fund", tarball];
  try {
    await run("npm", [...args, "--offline"], app, userEnv(), NPM_STEP_MS);
  } catch {
    await run("npm", [...args, "--prefer-offline"], app, userEnv(), NPM_STEP_MS);
  }
  const ours = createRequire(join(ROOT, "package.json"));
  const theirs = createRequire(join(app, "package.json"));
  const ourDir = join(ours.resolve("better-sqlite3/package.json"), "..");
  const theirDir = join(theirs.resolve("better-sqlite3/package.json"), "..");
  const version = (dir: string) =>
    (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
  if (version(ourDir) !== version(theirDir)) {
    throw new Error(
      `the app got better-sqlite3 ${version(theirDir)}, the repo built ${version(ourDir)}: pin them alike`,
    );
  }
  mkdirSync(join(theirDir, "build", "Release"), { recursive: true });
  copyFileSync(
    join(ourDir, "build", "Release", "better_sqlite3.node"),
    join(theirDir, "build", "Release", "better_sqlite3.node"),
  );
}

interface Printed {
  id: string;
  status: string;
  result: unknown;
  output: { ranAs?: string };
}

/** Runs the app's main as `node main.mjs` and reads the line it printed. */
async function runMain(app: string, env: Record<string, string> = {}): Promise<Printed> {
  const stdout = await run(process.execPath, ["main.mjs"], app, userEnv(env));
  const last = stdout.trim().split("\n").at(-1) ?? "";
  return JSON.parse(last) as Printed;
}

/** A daemon the way the README starts one: `npx numerous-executor serve` in the app's folder. */
interface NpxDaemon {
  readonly child: ChildProcess;
  readonly address: string;
  readonly logs: Array<Record<string, unknown>>;
}

function startNpxDaemon(app: string): Promise<NpxDaemon> {
  // Its own process group, as a shell's job: npx runs the bin through `sh -c`, and a signal to
  // npx alone may never reach the daemon, so stopping signals the group, as `kill %1` does.
  const child = spawn(
    "npx",
    ["numerous-executor", "serve", "--data-dir", ".numerous-tasks", "--listen", "127.0.0.1:0"],
    { cwd: app, env: userEnv(), detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  const logs: Array<Record<string, unknown>> = [];
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`the daemon did not log "listening" within 60 s: ${stderr}`));
    }, 60_000);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`npx exited (${code ?? signal}) before the daemon listened: ${stderr}`));
    });
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg !== "listening") return;
      clearTimeout(timer);
      resolve({ child, address: String(entry.address), logs });
    });
  });
}

/** Whether any process of the group led by `pid` is still there. */
function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves once the whole group is gone; rejects after `timeoutMs`, naming what waited. */
async function groupGone(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (groupAlive(pid)) {
    if (Date.now() > deadline) throw new Error(`processes of group ${pid} still run after ${timeoutMs} ms`);
    await sleep(50);
  }
}

describe("the package as users get it", () => {
  let work: string;
  let app: string;
  let packed: { tarball: string; files: PackedFile[] };
  let daemon: NpxDaemon | undefined;

  beforeAll(
    async () => {
      work = mkdtempSync(join(tmpdir(), "nt-pack-"));
      app = mkdtempSync(join(tmpdir(), "nt-app-"));
      packed = await packCopy(work);
      writeScratchApp(app);
      await installTarball(app, packed.tarball);
    },
    2 * NPM_STEP_MS + 60_000,
  );

  afterEach(async () => {
    const pid = daemon?.child.pid;
    daemon = undefined;
    if (pid === undefined || !groupAlive(pid)) return;
    process.kill(-pid, "SIGKILL");
    await groupGone(pid, 10_000);
  });

  afterAll(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
    if (app !== undefined) rmSync(app, { recursive: true, force: true });
  });

  it("ships what a user needs, built fresh, with an executable bin", () => {
    const paths = packed.files.map((file) => file.path);
    const unexpected = paths.filter(
      (path) =>
        !["package.json", "README.md", "LICENSE"].includes(path) &&
        !path.startsWith("dist/") &&
        !path.startsWith("proto/"),
    );
    expect(unexpected).toEqual([]);
    expect(paths.filter((path) => /(^|\/)(test|bench|chaos|examples)\//.test(path))).toEqual([]);
    expect(paths).not.toContain("dist/moved-away/old.js");
    expect(paths).toEqual(
      expect.arrayContaining([
        "LICENSE",
        "dist/index.js",
        "dist/index.d.ts",
        BIN,
        // The web console's browser scripts, built by npm run build (served by serve --http).
        "dist/executor-platform/console/app/console-app.js",
        "dist/executor-platform/console/app/console-kit.js",
        "proto/numerous/tasks/v1/tasks.proto",
      ]),
    );
    const bin = packed.files.find((file) => file.path === BIN);
    expect((bin?.mode ?? 0) & 0o111, "the bin is executable in the tarball").toBe(0o111);
    expect(readFileSync(join(app, "node_modules/numerous-tasks", BIN), "utf8")).toMatch(
      /^#!\/usr\/bin\/env node\n/,
    );
  });

  it("runs a task on the local executor with no configuration", async () => {
    const printed = await runMain(app);
    expect(printed).toMatchObject({ status: "completed", result: 6, output: { ranAs: "in-process" } });
  }, 60_000);

  it("runs the same task on a daemon started with npx numerous-executor serve", async () => {
    daemon = await startNpxDaemon(app);
    const printed = await runMain(app, {
      NUMEROUS_EXECUTOR: "platform",
      NUMEROUS_EXECUTOR_ADDRESS: daemon.address,
    });
    expect(printed).toMatchObject({ status: "completed", result: 6 });
    expect(printed.output.ranAs, "ran in a workload the daemon started for the instance").toBe(printed.id);

    const pid = daemon.child.pid as number;
    process.kill(-pid, "SIGTERM");
    await groupGone(pid, 30_000);
    expect(daemon.logs.some((entry) => entry.msg === "signal received")).toBe(true);
  }, 120_000);
});
