/** The task the schedule example starts (its own module: a workload imports it to find the task). */
import { task } from "numerous-tasks";

/** What a nightly report or a five-minute sync would be: here it just says when it ran. */
export const report = task(function report(kind: string) {
  return `${kind} report at ${new Date().toISOString()}`;
});
