import { type Command, Option } from "commander";
import {
  type Schedule,
  deleteSchedule,
  listSchedules,
  pauseSchedule,
  resumeSchedule,
  triggerSchedule,
} from "../../sdk/schedules.js";
import { type ClientOptions, ExitCode, table, withDaemon } from "./client-commands.js";

/**
 * `numerous-executor schedules list | pause | resume | delete | trigger` (SPEC §5): the
 * deployment's schedules on a daemon, with the next fire time and the last instance of each.
 */
export function addScheduleCommands(program: Command, exit: (code: number) => void): void {
  const address = () =>
    new Option("--address <address>", "the daemon's address").env("NUMEROUS_EXECUTOR_ADDRESS");
  const json = () => new Option("--json", "machine-readable output");
  const schedules = program
    .command("schedules")
    .description("look at and control the deployment's schedules");

  schedules
    .command("list")
    .description("every schedule, with its next fire time and its last instance")
    .addOption(address())
    .addOption(json())
    .action(async (options: ClientOptions) => {
      exit(
        await withDaemon(options, async () => {
          const all = await listSchedules();
          if (options.json) {
            process.stdout.write(`${JSON.stringify(all.map(toJson), null, 2)}\n`);
          } else if (all.length === 0) {
            process.stdout.write("no schedules\n");
          } else {
            process.stdout.write(
              `${table(
                ["NAME", "TASK", "WHEN", "STATE", "NEXT FIRE", "LAST OCCURRENCE", "LAST INSTANCE"],
                all.map((s) => [
                  s.name,
                  s.taskName,
                  when(s),
                  s.paused ? "paused" : "active",
                  s.nextFireAt?.toISOString() ?? "",
                  s.lastOccurrenceAt?.toISOString() ?? "",
                  s.lastInstanceId ?? "",
                ]),
              )}\n`,
            );
          }
          return ExitCode.Ok;
        }),
      );
    });

  const byName = (
    name: string,
    description: string,
    act: (schedule: string, options: ClientOptions) => Promise<number>,
  ) =>
    schedules
      .command(`${name} <name>`)
      .description(description)
      .addOption(address())
      .addOption(json())
      .action(async (schedule: string, options: ClientOptions) => {
        exit(await withDaemon(options, () => act(schedule, options)));
      });

  const show = (schedule: Schedule | undefined, name: string, options: ClientOptions): number => {
    if (schedule === undefined) {
      process.stderr.write(`numerous-executor: no schedule named ${JSON.stringify(name)}\n`);
      return ExitCode.NotFound;
    }
    process.stdout.write(
      options.json
        ? `${JSON.stringify(toJson(schedule), null, 2)}\n`
        : `${schedule.name}: ${schedule.paused ? "paused" : `active, next fire ${schedule.nextFireAt?.toISOString() ?? "never"}`}\n`,
    );
    return ExitCode.Ok;
  };

  byName("pause", "stop a schedule firing until it is resumed", async (name, options) =>
    show(await pauseSchedule(name), name, options),
  );
  byName("resume", "fire again from the next occurrence on", async (name, options) =>
    show(await resumeSchedule(name), name, options),
  );
  byName("delete", "delete a schedule (its instances are kept)", async (name, options) => {
    if (!(await deleteSchedule(name))) {
      process.stderr.write(`numerous-executor: no schedule named ${JSON.stringify(name)}\n`);
      return ExitCode.NotFound;
    }
    process.stdout.write(options.json ? `${JSON.stringify({ deleted: name })}\n` : `deleted ${name}\n`);
    return ExitCode.Ok;
  });
  byName("trigger", "start one instance of a schedule now; prints its id", async (name, options) => {
    const instance = await triggerSchedule(name);
    if (instance === undefined) {
      process.stderr.write(`numerous-executor: no schedule named ${JSON.stringify(name)}\n`);
      return ExitCode.NotFound;
    }
    process.stdout.write(options.json ? `${JSON.stringify({ id: instance.id })}\n` : `${instance.id}\n`);
    return ExitCode.Ok;
  });
}

function when(s: Schedule): string {
  if (s.every !== undefined) return `every ${s.every} ms`;
  return s.timezone === undefined ? `${s.cron}` : `${s.cron} (${s.timezone})`;
}

function toJson(s: Schedule): Record<string, unknown> {
  return {
    name: s.name,
    task: s.taskName,
    args: s.args,
    cron: s.cron,
    timezone: s.timezone,
    every: s.every,
    overlap: s.overlap,
    catchUp: s.catchUp,
    paused: s.paused,
    nextFireAt: s.nextFireAt?.toISOString(),
    lastOccurrenceAt: s.lastOccurrenceAt?.toISOString(),
    lastInstanceId: s.lastInstanceId,
  };
}
