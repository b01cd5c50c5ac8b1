import * as grpc from "@grpc/grpc-js";
import { type Command, Option } from "commander";
import { loadConfig } from "../../sdk/config.js";
import { ExecutorUnavailableError, TaskError } from "../../sdk/errors.js";
import { listTaskDefinitions, stopTaskInstance } from "../../sdk/api.js";
import { setExecutor } from "../../sdk/runtime.js";
import type { TaskInstanceState } from "../../sdk/task-instance-state.js";
import { type TaskStatus, isTaskStatus } from "../../sdk/task-status.js";
import { channelTarget, wantsTls } from "../client/address.js";
import { clientCredentials, unavailableDetail } from "../client/grpc-connection.js";
import {
  HealthClient,
  HealthCheckResponse_ServingStatus,
} from "../protocol/generated/grpc/health/v1/health_pb.js";
import { PlatformExecutor } from "../client/platform-executor.js";
import { ExitCode, STATUS_EXIT } from "./exit-code.js";
import {
  type InstanceView,
  type ShownInstance,
  describeEnd,
  detailLines,
  instanceTable,
  notesOf,
  shown,
  table,
  viewOf,
  watchLine,
} from "./instance-view.js";
import { type RunFlags, RunUsageError, parseRunRequest, startByName } from "./run-command.js";
import { addLogsCommand } from "./logs-command.js";

export { ExitCode } from "./exit-code.js";
export { table } from "./instance-view.js";

export interface ClientOptions {
  address?: string;
  json?: boolean;
}

function useDaemon(options: ClientOptions): PlatformExecutor {
  const config = loadConfig(process.env);
  const executor = new PlatformExecutor({ ...config, address: options.address ?? config.address });
  setExecutor(executor);
  return executor;
}

/** Runs a command body with the daemon, mapping SDK errors to messages and exit codes. */
export async function withDaemon(
  options: ClientOptions,
  body: (executor: PlatformExecutor) => Promise<number>,
): Promise<number> {
  let executor: PlatformExecutor | undefined;
  try {
    executor = useDaemon(options);
    return await body(executor);
  } catch (error) {
    process.stderr.write(`numerous-executor: ${error instanceof Error ? error.message : String(error)}\n`);
    if (error instanceof ExecutorUnavailableError) return ExitCode.Unavailable;
    if (error instanceof TaskError && (error.code === "EXECUTOR_CONFIG" || error.code === "TASK_INPUT"))
      return ExitCode.Usage;
    if (error instanceof TaskError && error.code === "TASK_NOT_FOUND") return ExitCode.NotFound;
    return ExitCode.Failed;
  } finally {
    await executor?.close();
  }
}

/** The instance, with the run options it carries; `undefined`, said on stderr, for an unknown id. */
async function found(executor: PlatformExecutor, id: string): Promise<ShownInstance | undefined> {
  const snapshot = await executor.get(id);
  if (snapshot === undefined)
    process.stderr.write(`numerous-executor: no task instance with id ${JSON.stringify(id)}\n`);
  return snapshot === undefined ? undefined : shown(executor, snapshot);
}

/**
 * grpc-js gives Node an IP address as the TLS server name, and Node warns about that on every
 * run of a command against `https://127.0.0.1:…`: noise for a person reading the output.
 */
function quietServerNameWarning(): void {
  const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const [, type, code] = args;
    if (
      code === "DEP0123" ||
      (typeof type === "object" && (type as { code?: unknown } | null)?.code === "DEP0123")
    )
      return;
    emitWarning(...args);
  }) as typeof process.emitWarning;
}

/** `tasks run | list | get | watch | stop | definitions` and `health`: the daemon's client side for people. */
export function addClientCommands(program: Command, exit: (code: number) => void): void {
  program.hook("preAction", (_program, command) => {
    if (command.name() !== "serve") quietServerNameWarning();
  });
  const address = () =>
    new Option("--address <address>", "the daemon's address").env("NUMEROUS_EXECUTOR_ADDRESS");
  const json = () => new Option("--json", "machine-readable output");
  const tasks = program.command("tasks").description("start, look at and control task instances on a daemon");

  tasks
    .command("run <name>")
    .description(
      "start a task the daemon knows for this deployment, by name, and print the instance id; " +
        "with --wait, then how it ended: exit code 0 completed, 1 failed, 3 cancelled; 2 bad flags, 4 unknown task",
    )
    .addOption(address())
    .addOption(json())
    .option("--args <json>", "the task's arguments as a JSON array", "[]")
    .option("--idempotency-key <key>", "every run with this key gets the one instance the first made")
    .option("--delay <duration>", "wait pending this long before it may start, e.g. 5s, 10m, 1h30m")
    .option("--priority <n>", "a whole number; higher starts first among ready instances (default 0)")
    .option("--max-attempts <n>", "attempts in all, retried after a failure with the default backoff")
    .option("--timeout <duration>", "per attempt: stop it, then kill it after the grace period, and fail it")
    .option("--wait", "wait until it has ended (interrupting the command leaves it running)")
    .action(async (name: string, options: ClientOptions & RunFlags) => {
      let request: ReturnType<typeof parseRunRequest>;
      try {
        request = parseRunRequest(options);
      } catch (error) {
        if (!(error instanceof RunUsageError)) throw error;
        process.stderr.write(`numerous-executor: ${error.message}\n`);
        return exit(ExitCode.Usage);
      }
      exit(
        await withDaemon(options, (executor) =>
          startByName(
            executor,
            name,
            request,
            options,
            (text) => process.stdout.write(text),
            (text) => process.stderr.write(`numerous-executor: ${text}\n`),
          ),
        ),
      );
    });

  tasks
    .command("list")
    .description("instances in creation order")
    .addOption(address())
    .addOption(json())
    .option("--task <name>", "only this task (name or definition id)")
    .option("--status <status...>", "only these statuses")
    .option("--limit <n>", "at most this many", "100")
    .option("--cursor <id>", "start after this instance id")
    .action(
      async (
        options: ClientOptions & { task?: string; status?: string[]; limit: string; cursor?: string },
      ) => {
        for (const status of options.status ?? []) {
          if (!isTaskStatus(status)) {
            process.stderr.write(
              `numerous-executor: unknown status ${JSON.stringify(status)}; use pending, running, completed, failed or cancelled\n`,
            );
            return exit(ExitCode.Usage);
          }
        }
        const limit = Number(options.limit);
        if (!Number.isInteger(limit) || limit < 1) {
          process.stderr.write("numerous-executor: --limit expects a whole number of at least 1\n");
          return exit(ExitCode.Usage);
        }
        exit(
          await withDaemon(options, async (executor) => {
            const page = await executor.list({
              task: options.task,
              status: options.status as TaskStatus[] | undefined,
              limit,
              cursor: options.cursor,
            });
            const views = page.instances.map((snapshot) => {
              const { instance, maxAttempts } = shown(executor, snapshot);
              return viewOf(instance.snapshot(), maxAttempts);
            });
            if (options.json) process.stdout.write(`${JSON.stringify(views)}\n`);
            else process.stdout.write(`${instanceTable(views)}\n`);
            return ExitCode.Ok;
          }),
        );
      },
    );

  tasks
    .command("get <id>")
    .description(
      "one instance, with its output, result or error; exit code 0, 1 failed, 3 cancelled, 4 unknown",
    )
    .addOption(address())
    .addOption(json())
    .action(async (id: string, options: ClientOptions) => {
      exit(
        await withDaemon(options, async (executor) => {
          const known = await found(executor, id);
          if (known === undefined) return ExitCode.NotFound;
          const { instance } = known;
          const view = viewOf(instance.snapshot(), known.maxAttempts);
          if (options.json) process.stdout.write(`${JSON.stringify(view)}\n`);
          else {
            const lines = [instanceTable([view], { notes: false }), ...detailLines(view, Date.now())];
            if (instance.isDone()) lines.push(describeEnd(instance));
            process.stdout.write(`${lines.join("\n")}\n`);
          }
          return STATUS_EXIT[instance.status];
        }),
      );
    });

  tasks
    .command("watch <id>")
    .description(
      "follow an instance live until it ends; exit code 0 completed, 1 failed, 3 cancelled, 4 unknown",
    )
    .addOption(address())
    .addOption(json())
    .action(async (id: string, options: ClientOptions) => {
      exit(
        await withDaemon(options, async (executor) => {
          const known = await found(executor, id);
          if (known === undefined) return ExitCode.NotFound;
          const { instance, maxAttempts } = known;
          const bar = !options.json && process.stderr.isTTY ? await progressBar(instance) : undefined;
          let last = "";
          for await (const snapshot of instance) {
            const view = viewOf(snapshot, maxAttempts);
            if (options.json) process.stdout.write(`${JSON.stringify(view)}\n`);
            else if (bar) bar.update(view);
            else {
              // Without a terminal, a line per visible change: an output alone changes none.
              const line = watchLine(view);
              if (line !== last) process.stdout.write(`${line}\n`);
              last = line;
            }
          }
          bar?.stop();
          if (!options.json) process.stdout.write(`${describeEnd(instance)}\n`);
          return STATUS_EXIT[instance.status];
        }),
      );
    });

  tasks
    .command("stop <id>")
    .description("ask an instance to stop; exit code 4 for an unknown id")
    .addOption(address())
    .option("--wait", "wait until it has ended, and exit by how it ended")
    .action(async (id: string, options: ClientOptions & { wait?: boolean }) => {
      exit(
        await withDaemon(options, async (executor) => {
          const known = await found(executor, id);
          if (known === undefined) return ExitCode.NotFound;
          const { instance } = known;
          await stopTaskInstance(id);
          if (!options.wait) {
            process.stdout.write(`stop requested for ${id}\n`);
            return ExitCode.Ok;
          }
          await instance.wait().catch(() => undefined);
          process.stdout.write(`${describeEnd(instance)}\n`);
          return STATUS_EXIT[instance.status];
        }),
      );
    });

  addLogsCommand(tasks, address, exit);

  tasks
    .command("definitions")
    .description("the task definitions the daemon knows for this deployment")
    .addOption(address())
    .addOption(json())
    .action(async (options: ClientOptions) => {
      exit(
        await withDaemon(options, async () => {
          const definitions = await listTaskDefinitions();
          if (options.json) process.stdout.write(`${JSON.stringify(definitions)}\n`);
          else
            process.stdout.write(
              `${table(
                ["NAME", "ID"],
                definitions.map((d) => [d.name, d.id]),
              )}\n`,
            );
          return ExitCode.Ok;
        }),
      );
    });

  program
    .command("health")
    .description("ask a daemon whether it serves (for container probes); exit code 0 serving, 1 not")
    .addOption(address())
    .option("--timeout-ms <ms>", "give up after this long", "3000")
    .action(async (options: ClientOptions & { timeoutMs: string }) => {
      const config = loadConfig(process.env);
      exit(
        await checkHealth(
          options.address ?? config.address,
          config.tlsCaFile,
          Number(options.timeoutMs) || 3000,
        ),
      );
    });
}

/** TLS as the SDK's client does it: an `https://` address or a CA file. */
async function checkHealth(
  address: string,
  tlsCaFile: string | undefined,
  timeoutMs: number,
): Promise<number> {
  let client: HealthClient;
  try {
    client = new HealthClient(channelTarget(address), clientCredentials(address, tlsCaFile));
  } catch (error) {
    process.stderr.write(`numerous-executor: ${(error as Error).message}\n`);
    return ExitCode.Usage;
  }
  try {
    const status = await new Promise<HealthCheckResponse_ServingStatus>((resolve, reject) => {
      client.check(
        { service: "" },
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, response) => (error ? reject(error) : resolve(response.status)),
      );
    });
    const name = HealthCheckResponse_ServingStatus[status] ?? String(status);
    process.stdout.write(`${name}\n`);
    return status === HealthCheckResponse_ServingStatus.SERVING ? ExitCode.Ok : ExitCode.Failed;
  } catch (error) {
    const details = (error as grpc.ServiceError).details ?? String(error);
    process.stdout.write(
      `UNREACHABLE: ${address}: ${unavailableDetail(details, wantsTls(address) || tlsCaFile !== undefined)}\n`,
    );
    return ExitCode.Failed;
  } finally {
    client.close();
  }
}

async function progressBar(
  instance: TaskInstanceState,
): Promise<{ update(view: InstanceView): void; stop(): void }> {
  const { SingleBar, Presets } = (await import("cli-progress")).default;
  const bar = new SingleBar(
    {
      format: `${instance.taskName} {bar} {percentage}% | {status}`,
      stream: process.stderr,
      hideCursor: true,
    },
    Presets.shades_classic,
  );
  bar.start(100, Math.round(instance.progress * 100), { status: instance.status });
  return {
    update: (view) => {
      const notes = notesOf(view);
      const status = notes.length === 0 ? view.status : `${view.status} (${notes.join(", ")})`;
      bar.update(Math.round(view.progress * 100), { status });
    },
    stop: () => bar.stop(),
  };
}
