/**
 * The Dockerfile, built and run as an operator would: the image is built with podman (on a
 * base image made from this machine's Node.js, since none can be pulled here), the daemon runs
 * in a container with a token, the app's compiled task module mounted at /app and its data in a
 * volume; `numerous-executor health` inside the container answers the probe; a client on the
 * host runs a task through it; after a restart the volume still holds the instance.
 *
 * Where `../shared/tools/podman` is present (CI has it), a runtime that cannot start fails the
 * test: the tool is there to run it. Skipped, saying why, only on a machine without the tool
 * where plain podman cannot start either. Slow: the first build takes minutes (later ones reuse
 * podman's layer cache).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** `../shared/tools` beside the repository, here and in CI. */
const TOOLS = join(ROOT, "../shared/tools");
const IMAGE = "localhost/numerous-executor:test";
const BASE_IMAGE = "localhost/node-base:20";
const DEV_BASE_IMAGE = "localhost/node-base-dev:20";
const TOKEN = "container-test-token";
const run = promisify(execFile);

const sharedPodman = existsSync(join(TOOLS, "podman"));
const podman = sharedPodman ? join(TOOLS, "podman") : "podman";
// Without the shared tool, plain podman gets the settings it applies on these machines.
if (!sharedPodman) {
  const conf = join(mkdtempSync(join(tmpdir(), "nt-podman-")), "containers.conf");
  writeFileSync(conf, '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n');
  process.env.CONTAINERS_CONF ??= conf;
}
const runtimeArgs = !sharedPodman && existsSync("/usr/sbin/runc") ? ["--runtime", "/usr/sbin/runc"] : [];

/** Why no container runtime can be started here, or undefined when one can. */
async function unavailableRuntime(): Promise<string | undefined> {
  try {
    // The shared tool installs podman first where it is missing.
    await run(podman, [...runtimeArgs, "info"], { timeout: 5 * 60_000, maxBuffer: 16 * 1024 * 1024 });
    return undefined;
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message: string };
    return `no container runtime can be started (${podman} info failed: ${(stderr || message).trim().split("\n").slice(-3).join(" ")})`;
  }
}

const unavailable = await unavailableRuntime();
// With the shared tool the runtime must start; the test reports why it did not.
const skipReason = sharedPodman ? undefined : unavailable;
if (skipReason !== undefined) console.warn(`test/container.test.ts skipped: ${skipReason}`);

async function podmanRun(args: readonly string[], timeoutMs = 60_000): Promise<string> {
  try {
    const { stdout } = await run(podman, [...runtimeArgs, ...args], {
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(
      `podman ${args.join(" ")} failed:\n${`${stdout ?? ""}${stderr ?? ""}`.trim().split("\n").slice(-30).join("\n")}`,
    );
  }
}

/** A port nothing listens on: bound, then let go (the container shares the host's network). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once the container has logged its `count`-th "listening" line; rejects if it stops first. */
function listening(container: string, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const follow: ChildProcess = spawn(podman, ["logs", "-f", container], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const seen: string[] = [];
    let found = 0;
    const onLine = (line: string) => {
      seen.push(line);
      try {
        if ((JSON.parse(line) as { msg?: unknown }).msg === "listening" && ++found === count) {
          follow.kill();
          resolve();
        }
      } catch {
        // Not a log line of the daemon's.
      }
    };
    createInterface({ input: follow.stdout as NodeJS.ReadableStream }).on("line", onLine);
    createInterface({ input: follow.stderr as NodeJS.ReadableStream }).on("line", onLine);
    follow.once("close", () =>
      reject(new Error(`the container stopped before listening:\n${seen.slice(-20).join("\n")}`)),
    );
  });
}

/** Runs `script` with node in `cwd`, the SDK configured by `env`; resolves with its stdout. */
async function node(cwd: string, script: string, env: Record<string, string>): Promise<string> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("NUMEROUS_")),
  );
  try {
    const { stdout } = await run(process.execPath, [script], {
      cwd,
      env: { ...clean, ...env },
      timeout: 60_000,
    });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`node ${script} failed:\n${stdout ?? ""}${stderr ?? ""}`);
  }
}

const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
});

describe.skipIf(skipReason !== undefined)("the container image", () => {
  it(
    "builds, runs a task for a client on the host with a token, answers health, runs as non-root, keeps its data across a restart",
    async () => {
      if (unavailable !== undefined) throw new Error(`${join(TOOLS, "podman")} is here, but ${unavailable}`);
      // 1. The image. The base made from this machine lacks Node's C headers, which
      //    better-sqlite3 compiles against: a derived base adds them.
      if (existsSync(join(TOOLS, "node-base-image")))
        await run(join(TOOLS, "node-base-image"), [], { timeout: 10 * 60_000 });
      const headers = join(dirname(dirname(process.execPath)), "include/node");
      const context = mkdtempSync(join(tmpdir(), "nt-node-base-dev-"));
      cleanups.push(() => rmSync(context, { recursive: true, force: true }));
      cpSync(headers, join(context, "include/node"), { recursive: true });
      writeFileSync(
        join(context, "Containerfile"),
        `FROM ${BASE_IMAGE}\nCOPY include/node /usr/include/node\n`,
      );
      await podmanRun(["build", "--network", "host", "-t", DEV_BASE_IMAGE, context], 5 * 60_000);
      await podmanRun(
        [
          "build",
          "--network",
          "host",
          "--format",
          "docker",
          "--build-arg",
          `NODE_IMAGE=${DEV_BASE_IMAGE}`,
          "-t",
          IMAGE,
          ROOT,
        ],
        20 * 60_000,
      );

      // 2. The app: a compiled task module, and a client that imports the package from this build.
      const app = mkdtempSync(join(tmpdir(), "nt-container-app-"));
      cleanups.push(() => rmSync(app, { recursive: true, force: true }));
      writeFileSync(
        join(app, "tasks.mjs"),
        [
          'import { getTaskController, task } from "numerous-tasks";',
          "export const inContainer = task(async function inContainer(x) {",
          "  getTaskController().setProgress(0.5);",
          "  return { doubled: x * 2, uid: process.getuid(), module: import.meta.url };",
          "});",
          "",
        ].join("\n"),
      );
      writeFileSync(
        join(app, "client.mjs"),
        [
          'import { inContainer } from "./tasks.mjs";',
          "const instance = inContainer(21);",
          "const result = await instance.wait();",
          "console.log(JSON.stringify({ id: instance.id, result }));",
          "process.exit(0);",
          "",
        ].join("\n"),
      );
      mkdirSync(join(app, "node_modules"));
      symlinkSync(ROOT, join(app, "node_modules/numerous-tasks"), "dir");

      // 3. The daemon in a container: host network on a free port, a token, /app and /data mounted.
      const port = await freePort();
      const name = `nt-container-test-${process.pid}-${Date.now().toString(36)}`;
      const volume = `${name}-data`;
      cleanups.push(() => podmanRun(["volume", "rm", "-f", volume]));
      cleanups.push(() => podmanRun(["rm", "-f", "-t", "2", name]));
      await podmanRun([
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        `NUMEROUS_EXECUTOR_TOKEN=${TOKEN}`,
        "-e",
        `NUMEROUS_EXECUTOR_LISTEN=0.0.0.0:${port}`,
        "-e",
        `NUMEROUS_EXECUTOR_ADDRESS=127.0.0.1:${port}`,
        "-v",
        `${volume}:/data`,
        "-v",
        `${join(app, "tasks.mjs")}:/app/tasks.mjs:ro`,
        IMAGE,
      ]);
      await listening(name, 1);
      const health = await podmanRun(["exec", name, "numerous-executor", "health"]);
      console.info(`numerous-executor health inside the container: ${health.trim()}`);
      expect(health).toBe("SERVING\n");
      expect((await podmanRun(["exec", name, "id", "-un"])).trim()).toBe("numerous");
      expect((await podmanRun(["exec", name, "id", "-u"])).trim()).not.toBe("0");

      // 4. A client on the host: its module path is relative to its working directory, which
      //    the daemon finds under its app root, /app.
      const env = {
        NUMEROUS_EXECUTOR: "platform",
        NUMEROUS_EXECUTOR_ADDRESS: `127.0.0.1:${port}`,
        NUMEROUS_API_ACCESS_TOKEN: TOKEN,
      };
      const ran = JSON.parse(await node(app, "client.mjs", env)) as {
        id: string;
        result: { doubled: number; uid: number; module: string };
      };
      expect(ran.result.doubled).toBe(42);
      expect(ran.result.uid).not.toBe(0);
      expect(ran.result.module).toBe("file:///app/tasks.mjs");
      // Without the token the daemon, listening beyond loopback, refuses.
      await expect(node(app, "client.mjs", { ...env, NUMEROUS_API_ACCESS_TOKEN: "" })).rejects.toThrow(
        /missing access token/,
      );

      // 5. A restart (SIGTERM, then a new daemon on the same volume) keeps the instance.
      await podmanRun(["restart", "-t", "20", name], 2 * 60_000);
      await listening(name, 2);
      expect(await podmanRun(["exec", name, "numerous-executor", "health"])).toBe("SERVING\n");
      expect((await podmanRun(["exec", name, "ls", "/data"])).split("\n")).toContain("numerous-tasks.db");
      const after = await podmanRun([
        "exec",
        "-e",
        `NUMEROUS_API_ACCESS_TOKEN=${TOKEN}`,
        name,
        "numerous-executor",
        "tasks",
        "get",
        ran.id,
        "--json",
      ]);
      expect(JSON.parse(after)).toMatchObject({
        id: ran.id,
        status: "completed",
        taskName: "inContainer",
        result: { doubled: 42 },
      });
    },
    30 * 60_000,
  );
});
