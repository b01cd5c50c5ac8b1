import * as grpc from "@grpc/grpc-js";
import { type Command, Option } from "commander";
import { loadConfig } from "../../sdk/config.js";
import { ExecutorUnavailableError, TaskError } from "../../sdk/errors.js";
import { getTaskInstance, listTaskDefinitions, listTaskInstances, stopTaskInstance } from "../../sdk/api.js";
import { setExecutor } from "../../sdk/runtime.js";
import type { TaskInstanceState, TaskSnapshot } from "../../sdk/task-instance-state.js";
import { type TaskStatus, isTaskStatus } from "../../sdk/task-status.js";
import { channelTarget, wantsTls } from "../client/address.js";
import { clientCredentials, unavailableDetail } from "../client/grpc-connection.js";
import {
  HealthClient,
  HealthCheckResponse_ServingStatus,
} from "../protocol/generated/grpc/health/v1/health_pb.js";
import { PlatformExecutor } from "../client/platform-executor.js";

/** How `tasks` commands end, so scripts can tell outcomes apart. */
export const ExitCode = {
  Ok: 0,
  Failed: 1,
  Usage: 2,
  Cancelled: 3,
  NotFound: 4,
  Unavailable: 5,
} as const;

const STATUS_EXIT: Record<TaskStatus, number> = {
  pending: ExitCode.Ok,
  running: ExitCode.Ok,
  completed: ExitCode.Ok,
  failed: ExitCode.Failed,
  cancelled: ExitCode.Cancelled,
};

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
export async function withDaemon(options: ClientOptions, body: () => Promise<number>): Promise<number> {
  let executor: PlatformExecutor | undefined;
  try {
    executor = useDaemon(options);
    return await body();
  } catch (error) {
    process.stderr.write(`numerous-executor: ${error instanceof Error ? error.message : String(error)}\n`);
    if (error instanceof ExecutorUnavailableError) return ExitCode.Unavailable;
    if (error instanceof TaskError && error.code === "EXECUTOR_CONFIG") return ExitCode.Usage;
    if (error instanceof TaskError && error.code === "TASK_NOT_FOUND") return ExitCode.NotFound;
    return ExitCode.Failed;
  } finally {
    await executor?.close();
  }
}

function row(instance: TaskSnapshot): string[] {
  return [
    instance.id,
    instance.taskName,
    instance.status,
    `${Math.round(instance.progress * 100)}%`,
    instance.createdAt.toISOString(),
    instance.finishedAt?.toISOString() ?? "",
  ];
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

function describeEnd(instance: TaskInstanceState): string {
  if (instance.status === "completed" || (instance.status === "cancelled" && instance.result !== undefined)) {
    return `${instance.status}: ${JSON.stringify(instance.result)}`;
  }
  const error = instance.error;
  return error ? `${instance.status}: ${error.name}: ${error.message}` : instance.status;
}

async function found(id: string): Promise<TaskInstanceState | undefined> {
  const instance = await getTaskInstance(id);
  if (instance === undefined)
    process.stderr.write(`numerous-executor: no task instance with id ${JSON.stringify(id)}\n`);
  return instance;
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

/** `tasks list | get | watch | stop | definitions` and `health`: the daemon's client side for people. */
export function addClientCommands(program: Command, exit: (code: number) => void): void {
  program.hook("preAction", (_program, command) => {
    if (command.name() !== "serve") quietServerNameWarning();
  });
  const address = () =>
    new Option("--address <address>", "the daemon's address").env("NUMEROUS_EXECUTOR_ADDRESS");
  const json = () => new Option("--json", "machine-readable output");
  const tasks = program.command("tasks").description("look at and control task instances on a daemon");

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
          await withDaemon(options, async () => {
            const instances = await listTaskInstances({
              ...(options.task === undefined ? {} : { task: options.task }),
              ...(options.status === undefined ? {} : { status: options.status as TaskStatus[] }),
              limit,
              ...(options.cursor === undefined ? {} : { cursor: options.cursor }),
            });
            const snapshots = instances.map((instance) => instance.snapshot());
            if (options.json) process.stdout.write(`${JSON.stringify(snapshots)}\n`);
            else
              process.stdout.write(
                `${table(["ID", "TASK", "STATUS", "PROGRESS", "CREATED", "FINISHED"], snapshots.map(row))}\n`,
              );
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
        await withDaemon(options, async () => {
          const instance = await found(id);
          if (instance === undefined) return ExitCode.NotFound;
          if (options.json) process.stdout.write(`${JSON.stringify(instance.snapshot())}\n`);
          else {
            const s = instance.snapshot();
            process.stdout.write(
              `${table(["ID", "TASK", "STATUS", "PROGRESS", "CREATED", "FINISHED"], [row(s)])}\n` +
                (s.output === undefined ? "" : `output: ${JSON.stringify(s.output)}\n`) +
                (instance.isDone() ? `${describeEnd(instance)}\n` : ""),
            );
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
        await withDaemon(options, async () => {
          const instance = await found(id);
          if (instance === undefined) return ExitCode.NotFound;
          const bar = !options.json && process.stderr.isTTY ? await progressBar(instance) : undefined;
          let last = "";
          for await (const snapshot of instance) {
            if (options.json) process.stdout.write(`${JSON.stringify(snapshot)}\n`);
            else if (bar) bar.update(snapshot);
            else {
              // Without a terminal, a line per visible change: an output alone changes none.
              const line = `${snapshot.status} ${Math.round(snapshot.progress * 100)}%`;
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
        await withDaemon(options, async () => {
          const instance = await found(id);
          if (instance === undefined) return ExitCode.NotFound;
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
): Promise<{ update(s: TaskSnapshot): void; stop(): void }> {
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
    update: (s) => bar.update(Math.round(s.progress * 100), { status: s.status }),
    stop: () => bar.stop(),
  };
}
