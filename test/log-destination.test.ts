import { connect } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { PlatformExecutor, setExecutor } from "numerous-tasks";
import { quick } from "./fixtures/fault-tasks.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";

const daemons: DaemonProcess[] = [];
const executors: PlatformExecutor[] = [];

afterEach(async () => {
  for (const executor of executors.splice(0)) await executor.close();
  for (const daemon of daemons.splice(0)) {
    daemon.child.stdout?.resume();
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) await daemon.stop();
    removeDataDir(daemon.dataDir);
  }
});

/** Makes the daemon log one warning: a workload stream that ends before its hello. */
function oneRefusal(socket: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const client = connect(socket, () => client.end());
    client.on("error", reject);
    client.on("close", () => resolve());
    client.resume();
  });
}

describe("the daemon's log", () => {
  it("costs log lines, counted and reported once drained, never the daemon, when its reader stops reading", async () => {
    const daemon = await startDaemon({ args: ["--log-buffer-bytes", "16384"] });
    daemons.push(daemon);
    const executor = new PlatformExecutor({
      address: daemon.address,
      accessToken: undefined,
      deploymentId: undefined,
      tlsCaFile: undefined,
    });
    executors.push(executor);
    setExecutor(executor);
    expect(await quick("before").wait()).toBe("before");

    // The reader stops: the pipe's or socket's buffer (up to a few hundred KiB), then the daemon's
    // 16 KiB, fill up: about 1 MiB of warnings is more than both hold.
    daemon.child.stdout?.pause();
    const socket = join(daemon.dataDir, "workload-frames.sock");
    for (let i = 0; i < 6000; i++) await oneRefusal(socket);
    // A blocking write would have stopped the daemon's event loop at the first full pipe.
    expect(await quick("while stalled").wait()).toBe("while stalled");

    daemon.child.stdout?.resume();
    const report = await daemon.waitForLog((entry) => typeof entry.dropped === "number");
    expect(report.msg).toBe("log lines were dropped: the log reader was not reading");
    expect(report.dropped).toBeGreaterThan(0);
    expect(await daemon.stop()).toBe(0);
  }, 120_000);
});
