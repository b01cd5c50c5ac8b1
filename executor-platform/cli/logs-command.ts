import { type Command, InvalidArgumentError, type Option } from "commander";
import type { TaskLogLine } from "../../sdk/executor.js";
import { type ClientOptions, withDaemon } from "./client-commands.js";
import { ExitCode, STATUS_EXIT } from "./exit-code.js";

interface LogsFlags extends ClientOptions {
  follow?: boolean;
  tail?: number;
  timestamps?: boolean;
}

function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a whole number of at least 0");
  return n;
}

/** `tasks logs ID [--follow] [--tail N]`: an instance's stdout and stderr as the daemon keeps them. */
export function addLogsCommand(tasks: Command, address: () => Option, exit: (code: number) => void): void {
  tasks
    .command("logs <id>")
    .description(
      "an instance's stdout and stderr as kept (its stderr lines go to stderr); exit code 4 for an unknown id",
    )
    .addOption(address())
    .option(
      "--follow",
      "go on with what it prints next until it has ended; then exit by how it ended (0 completed, 1 failed, 3 cancelled)",
    )
    .option("--tail <n>", "only the last n lines kept", count)
    .option("--timestamps", "begin each line with when it was written")
    .option("--json", "one JSON object a line: at, stream, line")
    .action(async (id: string, flags: LogsFlags) => {
      exit(
        await withDaemon(flags, async (executor) => {
          const lines = executor.logs(id, {
            follow: flags.follow === true,
            ...(flags.tail === undefined ? {} : { tail: flags.tail }),
          });
          for await (const line of lines) await print(line, flags);
          if (!flags.follow) return ExitCode.Ok;
          const ended = await executor.get(id);
          return ended === undefined ? ExitCode.NotFound : STATUS_EXIT[ended.status];
        }),
      );
    });
}

/** Writes a line where it belongs, waiting while the reader is behind. */
async function print(line: TaskLogLine, flags: LogsFlags): Promise<void> {
  const text = flags.json
    ? JSON.stringify({ at: line.at.toISOString(), stream: line.stream, line: line.line })
    : flags.timestamps
      ? `${line.at.toISOString()} ${line.line}`
      : line.line;
  const stream = !flags.json && line.stream === "stderr" ? process.stderr : process.stdout;
  if (!stream.write(`${text}\n`)) await new Promise((resolve) => stream.once("drain", resolve));
}
