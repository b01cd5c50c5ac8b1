/**
 * The part of the executor contract about logs (SPEC §6): each instance's stdout and stderr, its
 * console output included, attributed to it even while another instance prints at the same time
 * (in one process, locally and in a pool worker), read whole, by its last lines, or followed
 * until the instance ends. `test/executor-contract.ts` declares it inside every executor's suite.
 */
import { type Executor, TaskNotFoundError, type TaskLogLine } from "numerous-tasks";
import { describe, expect, it } from "vitest";
import { prints } from "./fixtures/log-tasks.js";
import { withDeadline } from "./helpers/deadline.js";

/** What `prints(tag, count)` writes to each stream, in order. */
export function printed(tag: string, count: number): { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  for (let i = 0; i < count; i++) {
    stdout.push(`${tag} out ${i}`);
    if (i % 3 === 0) stderr.push(`${tag} err ${i}`);
  }
  stdout.push(`${tag} last`);
  return { stdout, stderr };
}

/** Every line the iteration gives, within a deadline that names `what`. */
export function collect(lines: AsyncIterable<TaskLogLine>, what: string): Promise<TaskLogLine[]> {
  return withDeadline(
    (async () => {
      const all: TaskLogLine[] = [];
      for await (const line of lines) all.push(line);
      return all;
    })(),
    what,
  );
}

/** The lines of one stream, as text. */
export function linesOf(lines: readonly TaskLogLine[], stream?: "stdout" | "stderr"): string[] {
  return lines.filter((line) => stream === undefined || line.stream === stream).map((line) => line.line);
}

/** Declares the tests; `executor()` is the executor of the running test. */
export function describeLogsContract(executor: () => Executor): void {
  describe("logs", () => {
    it("keeps each instance's stdout and stderr, attributed to it while another prints at the same time", async () => {
      const a = prints("ca", 20);
      const b = prints("cb", 20);
      const followed = collect(b.logs({ follow: true }), "the follow of a running instance to end");
      await Promise.all([a.wait(), b.wait()]);
      for (const [instance, tag] of [
        [a, "ca"],
        [b, "cb"],
      ] as const) {
        const lines = await collect(instance.logs(), `the logs of ${tag}`);
        expect(linesOf(lines, "stdout")).toEqual(printed(tag, 20).stdout);
        expect(linesOf(lines, "stderr")).toEqual(printed(tag, 20).stderr);
        expect(lines.every((line) => line.at instanceof Date)).toBe(true);
      }
      const followedLines = linesOf(await followed);
      expect(followedLines.filter((line) => line.includes(" out ") || line.endsWith("last"))).toEqual(
        printed("cb", 20).stdout,
      );
      // Each stream keeps its order; across the two, a workload's own pipes are read as they come.
      const all = linesOf(await collect(a.logs(), "the logs of ca again"));
      expect(linesOf(await collect(a.logs({ tail: 2 }), "the last two lines"))).toEqual(all.slice(-2));
      expect(
        linesOf(await collect(a.logs({ follow: true, tail: 1 }), "a follow of an ended instance")),
      ).toEqual(all.slice(-1));
    });

    it("refuses an unknown id and a bad tail", async () => {
      const logs = executor().logs?.("no-such-instance", {});
      expect(logs).toBeDefined();
      await expect(collect(logs as AsyncIterable<TaskLogLine>, "the refusal")).rejects.toBeInstanceOf(
        TaskNotFoundError,
      );
      const instance = prints("bad", 0);
      expect(() => instance.logs({ tail: -1 })).toThrow(RangeError);
      await instance.wait();
    });
  });
}
