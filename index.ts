/**
 * numerous-tasks: background tasks for TypeScript apps. The one entry point: the SDK, with the
 * executor chosen from the environment on first use.
 */
import { type NumerousConfig, loadConfig } from "./sdk/config.js";
import type { Executor } from "./sdk/executor.js";
import { setDefaultExecutorFactory } from "./sdk/runtime.js";
import { LocalExecutor } from "./executor-local/local-executor.js";
import { PlatformExecutor } from "./executor-platform/client/platform-executor.js";

export * from "./sdk/index.js";

/**
 * Builds the executor a config names: the in-process local one, or a client of the platform
 * daemon.
 */
export function createExecutor(config: NumerousConfig = loadConfig()): Executor {
  if (config.executor === "platform") return new PlatformExecutor(config);
  return new LocalExecutor({ concurrency: config.concurrency });
}

setDefaultExecutorFactory(() => createExecutor(loadConfig()));

export { LocalExecutor, PlatformExecutor };
