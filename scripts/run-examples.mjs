#!/usr/bin/env node
/**
 * Runs every examples/[0-9]*.ts in order, each in its own process (`node --import tsx`), with
 * the current environment: `NUMEROUS_EXECUTOR=platform node scripts/run-examples.mjs` runs
 * them against a daemon. Exits non-zero if any example fails or times out.
 *
 * With `--platform`, it first starts a daemon of its own (from dist/, on a free loopback port,
 * its embedded store in a temporary folder), runs the examples against it, and stops it.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createInterface } from "node:readline";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const TIMEOUT_MS = 60_000;
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dir = join(root, "examples");
const files = readdirSync(dir)
  .filter((name) => /^[0-9].*\.ts$/.test(name))
  .sort()
  .map((name) => join(dir, name));

function run(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ["--import", "tsx", file], {
      cwd: root,
      env: process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, TIMEOUT_MS);
    child.on("error", (error) => (output += `\n${error.stack ?? error}`));
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - started;
      const why = timedOut
        ? `timed out after ${TIMEOUT_MS} ms`
        : signal
          ? `killed by ${signal}`
          : `exit code ${code}`;
      resolve({ ok: !timedOut && code === 0, why, ms, output });
    });
  });
}

/** Starts `numerous-executor serve` on 127.0.0.1:0 and resolves its address and a stop function. */
async function startDaemon() {
  const dataDir = mkdtempSync(join(tmpdir(), "numerous-examples-"));
  const cli = join(root, "dist/executor-platform/cli/cli.js");
  const child = spawn(process.execPath, [cli, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    cwd: root,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const address = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      try {
        const entry = JSON.parse(line);
        if (entry.msg === "listening") resolve(entry.address);
      } catch {}
    });
    child.once("exit", (code) => reject(new Error(`the daemon exited with ${code} before listening`)));
  });
  const stop = async () => {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  };
  return { address, stop };
}

let daemon;
if (process.argv.includes("--platform")) {
  daemon = await startDaemon();
  process.env.NUMEROUS_EXECUTOR = "platform";
  process.env.NUMEROUS_EXECUTOR_ADDRESS = daemon.address;
  console.log(`platform executor: a daemon on ${daemon.address}`);
} else {
  console.log(`executor: ${process.env.NUMEROUS_EXECUTOR || "local (NUMEROUS_EXECUTOR unset)"}`);
}

let failed = 0;
for (const file of files) {
  const name = relative(root, file);
  const { ok, why, ms, output } = await run(file);
  if (ok) {
    console.log(`ok ${name} (${ms} ms)`);
  } else {
    failed++;
    console.log(`FAIL ${name} (${why}, ${ms} ms)`);
    console.log(output.replace(/^/gm, "    ").trimEnd());
  }
}
await daemon?.stop();
console.log(`${files.length - failed} passed, ${failed} failed, ${files.length} examples`);
process.exitCode = failed === 0 && files.length > 0 ? 0 : 1;
