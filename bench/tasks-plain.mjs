// The trivial bench task in a plain JavaScript module: a workload that runs it needs no tsx,
// as with an app deployed compiled. Same body as `benchTick` in tasks.ts.
import { getTaskController, task } from "numerous-tasks";

export const benchTickPlain = task(function benchTickPlain(i) {
  getTaskController().setProgress(0.5);
  return i + 1;
});

// `benchBegan` of tasks.ts: when its function began, in epoch milliseconds with a fraction.
export const benchBeganPlain = task(function benchBeganPlain() {
  return performance.timeOrigin + performance.now();
});
