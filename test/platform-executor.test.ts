import { PlatformExecutor } from "numerous-tasks";
import { CONTRACT_CONCURRENCY, describeExecutorContract } from "./executor-contract.js";
import { removeDataDir, startDaemon } from "./helpers/daemon-process.js";

/** Short, so a test of the kill is short; long enough for a task that does stop to end. */
const STOP_GRACE_MS = 2000;

for (const mode of ["process", "pool"] as const) {
  describeExecutorContract(
    `platform, ${mode} workloads, over a real daemon`,
    async () => {
      const daemon = await startDaemon({
        args: [
          "--concurrency",
          String(CONTRACT_CONCURRENCY),
          "--workload-mode",
          mode,
          "--stop-grace-ms",
          String(STOP_GRACE_MS),
        ],
      });
      const executor = new PlatformExecutor({
        address: daemon.address,
        accessToken: undefined,
        deploymentId: undefined,
        tlsCaFile: undefined,
      });
      return {
        executor,
        async close() {
          await executor.close();
          await daemon.stop();
          removeDataDir(daemon.dataDir);
        },
      };
    },
    { workloads: { stopGraceMs: STOP_GRACE_MS } },
  );
}
