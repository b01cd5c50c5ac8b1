export { LocalExecutor } from "./local-executor.js";
