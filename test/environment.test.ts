/**
 * How the SDK chooses its executor from the environment (SPEC section 2), seen from processes
 * of their own, as an app runs: the environment is read once, on first use; with nothing set,
 * a platform client reaches the address where `serve` listens by default, and that address is
 * loopback only.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { PlatformExecutor, loadConfig } from "numerous-tasks";
import { afterEach, describe, expect, it } from "vitest";
import { cliEnv } from "./helpers/cli-process.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const run = promisify(execFile);

const daemons: DaemonProcess[] = [];
afterEach(async () => {
  for (const daemon of daemons.splice(0)) {
    await daemon.stop();
    removeDataDir(daemon.dataDir);
  }
});

/** Runs a probe under `node --import tsx` as an app runs, and parses the JSON it prints. */
async function probe<T>(name: string, args: readonly string[], env: Record<string, string>): Promise<T> {
  const { stdout } = await run(process.execPath, ["--import", "tsx", fixture(name), ...args], {
    cwd: ROOT,
    env: cliEnv(env),
    timeout: 60_000,
  });
  return JSON.parse(stdout) as T;
}

describe("the environment is read once, on first use", () => {
  it("not at import, then not again: the executor the first call found runs every later call", async () => {
    const daemon = await startDaemon();
    daemons.push(daemon);
    // Set at import, changed before the first call, changed again after it.
    const report = await probe<{ ids: string[]; results: string[] }>("first-use-probe.ts", [daemon.address], {
      NUMEROUS_EXECUTOR: "not-an-executor",
    });
    expect(report.results).toStrictEqual(["first", "second"]);
    // Both ran on the daemon: the later call did not turn to the changed address or executor.
    const client = new PlatformExecutor({
      address: daemon.address,
      accessToken: undefined,
      deploymentId: undefined,
      tlsCaFile: undefined,
    });
    try {
      const listed = await client.list({});
      expect(listed.instances.map((instance) => [instance.id, instance.status])).toStrictEqual(
        report.ids.map((id) => [id, "completed"]),
      );
    } finally {
      await client.close();
    }
  });

  it("a value no executor has fails the first call with ExecutorConfigError naming NUMEROUS_EXECUTOR", async () => {
    const report = await probe<{
      first: { threw: boolean; configError: boolean; variable: string; message: string };
    }>("first-use-probe.ts", ["", "bad at first use"], { NUMEROUS_EXECUTOR: "plattform" });
    expect(report.first).toMatchObject({ threw: true, configError: true, variable: "NUMEROUS_EXECUTOR" });
    expect(report.first.message).toContain('NUMEROUS_EXECUTOR="plattform"');
    expect(report.first.message).toContain("NUMEROUS_PLATFORM_EXECUTOR");
  });
});

describe("the default address", () => {
  it("is 127.0.0.1:7777 for a client, where serve listens by default, and on loopback only", async () => {
    // SPEC section 2's default.
    expect(loadConfig({}).address).toBe("127.0.0.1:7777");
    expect(loadConfig({ NUMEROUS_EXECUTOR_ADDRESS: " " }).address).toBe("127.0.0.1:7777");
    // A network namespace of its own: the default port is free there whatever runs here, and its
    // loopback interface also holds an address that is not loopback.
    const inNamespace = [
      "ip link set lo up",
      "ip addr add 10.99.0.1/32 dev lo",
      `exec ${JSON.stringify(process.execPath)} --import tsx ${JSON.stringify(fixture("default-listen-probe.ts"))}`,
    ].join(" && ");
    let stdout: string;
    try {
      ({ stdout } = await run("unshare", ["-rn", "sh", "-c", inNamespace], {
        cwd: ROOT,
        env: cliEnv(),
        timeout: 60_000,
      }));
    } catch (error) {
      const { stderr, message } = error as { stderr?: string; message: string };
      throw new Error(
        `the probe needs a network namespace of its own (unshare -rn, and ip from iproute2): ${stderr || message}`,
      );
    }
    const report = JSON.parse(stdout) as Record<string, string>;
    expect(report).toStrictEqual({
      listening: "127.0.0.1:7777",
      result: "reached by default",
      loopback: "connected",
      // The port is open on loopback and closed on the other address: bound to 127.0.0.1 alone.
      notLoopback: "ECONNREFUSED",
    });
  });
});
