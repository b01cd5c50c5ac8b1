export { LocalExecutor, createLocalExecutor, type LocalExecutorOptions } from "./local-executor.js";
