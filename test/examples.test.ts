import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const EXAMPLES = readdirSync(join(ROOT, "examples"))
  .filter((name) => /^[0-9].*\.ts$/.test(name))
  .sort();

/** Runs one example as a user would, in its own process; resolves its exit code and output. */
function runExample(
  name: string,
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", join("examples", name)], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk));
    child.on("close", (code) => resolve({ code, output }));
  });
}

describe("examples on the local executor (no configuration)", () => {
  it.each(EXAMPLES)("%s runs and checks itself", async (name) => {
    const { code, output } = await runExample(name, { NUMEROUS_EXECUTOR: "" });
    expect(code, output).toBe(0);
  });
});

describe("the same examples on the platform executor (two variables)", () => {
  let daemon: DaemonProcess;

  beforeAll(async () => {
    daemon = await startDaemon({ args: ["--workload-mode", "pool"] });
  });

  afterAll(async () => {
    await daemon.stop();
    removeDataDir(daemon.dataDir);
  });

  it.each(EXAMPLES)("%s runs and checks itself", async (name) => {
    const { code, output } = await runExample(name, {
      NUMEROUS_EXECUTOR: "platform",
      NUMEROUS_EXECUTOR_ADDRESS: daemon.address,
    });
    expect(code, output).toBe(0);
  });
});
