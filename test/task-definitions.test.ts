/**
 * Defining tasks as an app does, in a process of its own (`test/fixtures/definitions-probe.ts`
 * under `node --import tsx`): two functions under one name are refused whether they come from
 * two modules or from one module before and after an `await`; a new evaluation of a module (a
 * hot reload) replaces its definitions; a definition's id is the same in every process.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { add, echo } from "./fixtures/contract-tasks.js";
import { cliEnv } from "./helpers/cli-process.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

interface Outcome {
  readonly threw: boolean;
  readonly typeError?: boolean;
  readonly message?: string;
}

interface ProbeReport {
  readonly clash: Outcome;
  readonly firstStillRuns: string;
  readonly afterAwait: Outcome;
  readonly evaluations: { readonly first: string; readonly reloaded: string };
  readonly beforeReload: string;
  readonly afterReload: string;
  readonly reloadedAfterAwait: Outcome;
  readonly ids: { readonly add: string; readonly echo: string };
}

async function probe(): Promise<ProbeReport> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--import", "tsx", fixture("definitions-probe.ts")],
    { cwd: ROOT, env: cliEnv(), timeout: 60_000 },
  );
  return JSON.parse(stdout) as ProbeReport;
}

describe("defining tasks in an app's process", () => {
  it("refuses two functions under one name from two modules, naming where the first was defined", async () => {
    const report = await probe();
    expect(report.clash).toMatchObject({ threw: true, typeError: true });
    expect(report.clash.message).toContain('a task named "nameClash" is already defined');
    expect(report.clash.message).toContain(fixture("name-clash-first.ts"));
    expect(report.firstStillRuns).toBe("first");
  });

  it("refuses the same name defined again after an await in one evaluation; a reload replaces", async () => {
    const report = await probe();
    expect(report.afterAwait).toMatchObject({ threw: true, typeError: true });
    expect(report.afterAwait.message).toContain('a task named "redefinedAfterAwait" is already defined');
    expect(report.afterAwait.message).toContain(fixture("redefined-after-await.ts"));
    // The first function stays the task's: calling it runs it, not the one refused.
    expect(report.beforeReload).toBe(report.evaluations.first);
    // A new evaluation of the module replaces the definition, and is refused the same way after its await.
    expect(report.evaluations.reloaded).not.toBe(report.evaluations.first);
    expect(report.afterReload).toBe(report.evaluations.reloaded);
    expect(report.reloadedAfterAwait).toMatchObject({ threw: true, typeError: true });
  });

  it("gives a definition the same id in every process", async () => {
    const [one, other] = await Promise.all([probe(), probe()]);
    expect(one.ids).toStrictEqual({ add: add.definition.id, echo: echo.definition.id });
    expect(other.ids).toStrictEqual(one.ids);
    expect(add.definition.id).not.toBe(echo.definition.id);
  });
});
