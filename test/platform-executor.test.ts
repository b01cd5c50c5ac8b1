import { PlatformExecutor } from "numerous-tasks";
import { CONTRACT_CONCURRENCY, describeExecutorContract } from "./executor-contract.js";
import { removeDataDir, startDaemon } from "./helpers/daemon-process.js";

for (const mode of ["process", "pool"] as const) {
  describeExecutorContract(`platform, ${mode} workloads, over a real daemon`, async () => {
    const daemon = await startDaemon({
      args: [
        "--concurrency",
        String(CONTRACT_CONCURRENCY),
        "--workload-mode",
        mode,
        "--stop-grace-ms",
        "2000",
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
  });
}
