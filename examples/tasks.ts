/**
 * Tasks shared by several examples. Task definitions live at module top level: in platform
 * mode the workload process imports this module to find the function by its name.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { getTaskController, task } from "numerous-tasks";

/** The simplest task: the name defaults to the function's name, "compute". */
export const compute = task(function compute(x: number): number {
  return x + 1;
});

/** Takes `steps * stepMs` ms, reports progress and output, and returns early when stopped. */
export const slowCompute = task(async function slowCompute(x: number, steps = 10, stepMs = 100) {
  const controller = getTaskController();
  for (let i = 0; i < steps; i++) {
    if (controller.shouldStop()) return x;
    await sleep(stepMs);
    controller.setProgress((i + 1) / steps);
  }
  controller.setOutput({ result: x + 1 });
  return x + 1;
});
