import { connect as connectSocket } from "node:net";
import { pathToFileURL } from "node:url";
import { decodeValue } from "../../sdk/codec.js";
import { TaskTimeoutError, toErrorInfo } from "../../sdk/errors.js";
import { failures } from "../../sdk/failures.js";
import { type TaskOutcome, runTaskFunction } from "../../sdk/run-task-function.js";
import { TaskControllerImpl } from "../../sdk/task-controller.js";
import { findTaskFunction } from "../../sdk/task.js";
import { flushTraces, isTracing, runInProcessSpan } from "../../sdk/tracing.js";
import { installOutputCapture } from "../../sdk/output-capture.js";
import {
  DaemonMessage,
  type Start,
  WorkloadMessage,
} from "../protocol/generated/messages/numerous/tasks/v1/tasks_pb.js";
import {
  FRAME_MESSAGE,
  FRAME_REFUSAL,
  FrameReader,
  STATUS,
  decodeRefusal,
  encodeFrame,
} from "../protocol/workload-frames.js";
import { errorToWire, isTypeScriptModule, statusToWire } from "../protocol/wire.js";
import { WorkloadOutput } from "./workload-output.js";

/** What a workload needs from its environment: set by the daemon that started it. */
export interface WorkloadEnvironment {
  /** The daemon's gRPC address (used when there is no framed socket). */
  readonly address: string;
  /** The daemon's framed workload socket (NUMEROUS_WORKLOAD_SOCKET); preferred: no gRPC to load. */
  readonly socket: string | undefined;
  readonly token: string;
  /** Process mode: the one instance to run. Pool mode, and a warm runner: undefined. */
  readonly instanceId: string | undefined;
  /**
   * A process-mode runner started ahead of demand (NUMEROUS_WORKLOAD_WARM): it runs the one
   * instance the daemon gives it, its output read from its pipes as any process-mode workload's.
   */
  readonly warm?: boolean | undefined;
  /** Whether TypeScript modules load already (started with tsx: NUMEROUS_WORKLOAD_TSX=1). */
  readonly typescript?: boolean | undefined;
  /**
   * Pool mode: console output kept per instance (the daemon's --log-bytes), sent to the daemon;
   * 0 or absent: none is. (A process-mode workload's output is read from its pipes.)
   */
  readonly logBytes?: number | undefined;
}

/** Why a link to the daemon ended: a refusal carries a gRPC status code. */
interface LinkEnd {
  readonly code: number;
  readonly details: string;
}

/** One connection to the daemon, framed or gRPC: the runner needs no more than this. */
interface Link {
  write(message: WorkloadMessage): void;
  end(): void;
}

type OpenLink = (onMessage: (message: DaemonMessage) => void, onEnd: (end?: LinkEnd) => void) => Link;

/** A link over the daemon's framed unix socket (see workload-frames.ts). */
function framedLinks(path: string): OpenLink {
  return (onMessage, onEnd) => {
    const socket = connectSocket(path);
    const reader = new FrameReader(64 * 1024 * 1024);
    let ended = false;
    const end = (why?: LinkEnd) => {
      if (ended) return;
      ended = true;
      onEnd(why);
    };
    socket.on("data", (chunk: Buffer) => {
      let frames: ReturnType<FrameReader["push"]>;
      try {
        frames = reader.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const frame of frames) {
        if (ended) return;
        if (frame.kind === FRAME_REFUSAL) {
          const refusal = decodeRefusal(frame.payload);
          end({ code: refusal.code, details: refusal.message });
          socket.destroy();
          return;
        }
        let message: DaemonMessage;
        try {
          message = DaemonMessage.decode(frame.payload);
        } catch {
          socket.destroy();
          return;
        }
        onMessage(message);
      }
    });
    socket.on("error", () => {
      // "close" follows.
    });
    socket.on("close", () => end());
    return {
      write: (message) => {
        if (!socket.destroyed && !socket.writableEnded)
          socket.write(encodeFrame(FRAME_MESSAGE, WorkloadMessage.encode(message).finish()));
      },
      end: () => socket.end(),
    };
  };
}

/** A link over gRPC, for a daemon whose data directory is too deep for a unix socket path. */
async function grpcLinks(address: string): Promise<{ open: OpenLink; close: () => void }> {
  const grpc = await import("@grpc/grpc-js");
  const { WorkloadServiceClient } = await import("../protocol/generated/numerous/tasks/v1/tasks_pb.js");
  const { channelTarget } = await import("../client/address.js");
  const client = new WorkloadServiceClient(channelTarget(address), grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    // gRPC's default backoff grows to minutes: a restarted daemon would wait out its reconnect
    // window before the workload even tried again.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
  });
  const open: OpenLink = (onMessage, onEnd) => {
    const call = client.connect();
    let ended = false;
    const end = (why?: LinkEnd) => {
      if (ended) return;
      ended = true;
      onEnd(why);
    };
    call.on("data", (message: DaemonMessage) => onMessage(message));
    call.on("error", (error: { code: number; details: string }) =>
      end({ code: error.code, details: error.details }),
    );
    call.on("end", () => end());
    return {
      write: (message) => {
        try {
          call.write(message);
        } catch {
          // The reconnect re-sends what matters.
        }
      },
      end: () => call.end(),
    };
  };
  return { open, close: () => client.close() };
}

const RECONNECT_FOR_MS = 60_000;
/** At exit, how long a registered OpenTelemetry SDK may take to export its last spans. */
const FLUSH_TRACES_MS = 2_000;

interface Current {
  readonly start: Start;
  readonly controller: TaskControllerImpl;
  progress: number | undefined;
  output: string | undefined;
  /** When the daemon said stop (0: it has not): a daemon that restarted since enforces its grace. */
  stopRequestedAt: number;
}

/** Which attempt of which instance a Start is: a retried instance may come back to the same worker. */
function attemptKey(start: { instanceId: string; attempt: number }): string {
  return `${start.instanceId}#${start.attempt}`;
}

/**
 * The workload side of the daemon: connects, runs what the daemon starts, streams progress and
 * output, reports the end, and reconnects (re-reporting its state) when the daemon restarts.
 * Resolves when a process-mode workload is done or the daemon is gone for good.
 */
export async function runWorkload(env: WorkloadEnvironment): Promise<number> {
  const links = env.socket
    ? { open: framedLinks(env.socket), close: () => {} }
    : await grpcLinks(env.address);
  let current: Current | undefined;
  /** Ends reported but not yet acknowledged as durable: said again after a reconnect. */
  const unacked = new Map<string, WorkloadMessage>();
  let stream: Link | undefined;
  let done: ((code: number) => void) | undefined;
  const finishedAll = new Promise<number>((resolve) => {
    done = resolve;
  });
  let lostSince: number | undefined;
  /** The first instance started here: a process-mode runner runs one only, and names it to the next daemon. */
  let given: string | undefined;

  const send = (message: WorkloadMessage) => stream?.write(message);
  // In a pool worker, output written in a task's async context is that instance's.
  const single = env.instanceId !== undefined || env.warm === true;
  const output =
    !single && (env.logBytes ?? 0) > 0
      ? new WorkloadOutput(env.logBytes ?? 0, send, () => stream !== undefined)
      : undefined;
  if (output !== undefined) installOutputCapture();

  const run = async (start: Start) => {
    const controller = new TaskControllerImpl(start.instanceId, start.taskName, {
      progress: (value) => {
        if (current) current.progress = value;
        send({ kind: { $case: "progress", value: { instanceId: start.instanceId, value } } });
      },
      output: (output) => {
        if (current) current.output = output;
        send({ kind: { $case: "output", value: { instanceId: start.instanceId, output } } });
      },
    });
    current = { start, controller, progress: undefined, output: undefined, stopRequestedAt: 0 };
    const mine = current;
    controller.outputSink = output;
    output?.begin(start.instanceId);
    const usageBefore = process.resourceUsage();
    // As the platform promises in every workload: a pool worker learns them with each instance,
    // and any worker gets arguments too large for the environment the daemon started it with.
    process.env.NUMEROUS_TASK_INSTANCE_ID = start.instanceId;
    process.env.TASK_DATA_INPUT = start.args;
    let outcome: TaskOutcome;
    try {
      let fn = findTaskFunction(start.taskName);
      if (fn === undefined) {
        if (isTypeScriptModule(start.module) && !env.typescript) await registerTypeScript();
        await import(pathToFileURL(start.module).href);
        fn = findTaskFunction(start.taskName);
      }
      if (fn !== undefined) {
        // The attempt's timeout counts from here: this process's start-up and the import are not the task's.
        send({ kind: { $case: "started", value: { instanceId: start.instanceId } } });
      }
      outcome =
        fn === undefined
          ? { status: "failed", error: failures.taskNotInModule(start.module, start.taskName) }
          : await (isTracing()
              ? runInProcessSpan(
                  {
                    taskName: start.taskName,
                    instanceId: start.instanceId,
                    attempt: start.attempt,
                    traceContext: start.traceContext,
                  },
                  () => runTaskFunction(fn, start.args, controller),
                )
              : runTaskFunction(fn, start.args, controller));
    } catch (thrown) {
      outcome = { status: "failed", error: toErrorInfo(thrown) };
    }
    // What the attempt used: a process-mode workload all it used; a pool worker the difference
    // (CPU) and its peak so far (memory: a process has no peak of its own per instance).
    const usage = process.resourceUsage();
    const cpuMicros =
      usage.userCPUTime +
      usage.systemCPUTime -
      (env.instanceId === undefined ? usageBefore.userCPUTime + usageBefore.systemCPUTime : 0);
    output?.end(start.instanceId);
    const finished: WorkloadMessage = {
      kind: {
        $case: "finished",
        value: {
          instanceId: start.instanceId,
          status: statusToWire(outcome.status),
          result: "result" in outcome ? outcome.result : undefined,
          error: "error" in outcome && outcome.error !== undefined ? errorToWire(outcome.error) : undefined,
          // Said again with the end: the Output message may have gone to a daemon that died.
          output: mine.output,
          cpuSeconds: cpuMicros / 1e6,
          peakMemoryBytes: usage.maxRSS * 1024,
        },
      },
    };
    unacked.set(attemptKey(start), finished);
    if (current === mine) {
      current = undefined;
      delete process.env.NUMEROUS_TASK_INSTANCE_ID;
      delete process.env.TASK_DATA_INPUT;
    }
    send(finished);
  };

  const connect = () => {
    const onMessage = (message: DaemonMessage) => {
      lostSince = undefined;
      const kind = message.kind;
      if (kind === undefined) return;
      if (kind.$case === "start") {
        // A Start again after a reconnect: this instance runs or ran here; only its end may
        // need saying again.
        const ended = unacked.get(attemptKey(kind.value));
        if (ended !== undefined) return send(ended);
        if (current !== undefined || (given !== undefined && single)) return;
        given ??= kind.value.instanceId;
        void run(kind.value);
      } else if (kind.$case === "stop") {
        if (current?.start.instanceId === kind.value.instanceId) {
          if (current.stopRequestedAt === 0) current.stopRequestedAt = Date.now();
          // A timeout's stop: the task's signal says so with a TaskTimeoutError.
          const { instanceId, timeoutMs } = kind.value;
          current.controller.requestStop(
            timeoutMs > 0 ? new TaskTimeoutError(instanceId, timeoutMs, "attempt") : undefined,
          );
        }
      } else if (kind.$case === "finishedAck") {
        // The acknowledgement names the instance: every end of it said so far is durable.
        for (const key of unacked.keys()) {
          if (key.startsWith(`${kind.value.instanceId}#`)) unacked.delete(key);
        }
        if (single && current === undefined && unacked.size === 0) {
          call.end();
          done?.(0);
        }
      }
    };
    const lost = (end?: LinkEnd) => {
      if (stream !== call) return;
      stream = undefined;
      if (end?.code === STATUS.PERMISSION_DENIED || end?.code === STATUS.UNAUTHENTICATED) {
        process.stderr.write(`numerous-executor run: the daemon refused this workload: ${end.details}\n`);
        done?.(2);
        return;
      }
      // A warm runner that was given nothing, or a pool worker with nothing running and every
      // end acknowledged, has nothing to tell the next daemon, which starts workloads of its own.
      const idle = single
        ? env.warm === true && given === undefined
        : current === undefined && unacked.size === 0;
      if (idle) {
        done?.(0);
        return;
      }
      lostSince ??= Date.now();
      if (Date.now() - lostSince > RECONNECT_FOR_MS) {
        process.stderr.write("numerous-executor run: the daemon is gone; giving up\n");
        done?.(1);
        return;
      }
      setTimeout(connect, 100);
    };
    const call = links.open(onMessage, lost);
    stream = call;
    call.write({
      kind: {
        $case: "hello",
        value: {
          workloadToken: env.token,
          // A process-mode runner whose end is not acknowledged yet names its instance.
          instanceId: current?.start.instanceId ?? env.instanceId ?? (single ? given : undefined) ?? "",
          pid: process.pid,
          stopRequestedAtMs: current?.stopRequestedAt ?? 0,
        },
      },
    });
    if (current !== undefined) {
      const id = current.start.instanceId;
      if (current.progress !== undefined)
        send({ kind: { $case: "progress", value: { instanceId: id, value: current.progress } } });
      if (current.output !== undefined)
        send({ kind: { $case: "output", value: { instanceId: id, output: current.output } } });
    }
    // Output waiting for the daemon goes before the ends it came before.
    output?.flush(true);
    for (const finished of unacked.values()) send(finished);
  };

  connect();
  const code = await finishedAll;
  links.close();
  // The process exits next: spans an SDK still holds would be lost.
  await flushTraces(FLUSH_TRACES_MS);
  return code;
}

let typescriptLoader: Promise<void> | undefined;

/** Registers tsx in this process, once: a warm runner started without it was given a TypeScript module. */
function registerTypeScript(): Promise<void> {
  typescriptLoader ??= import("tsx/esm/api").then(
    ({ register }) => {
      register();
    },
    (error: unknown) => {
      throw new Error(
        `this task's module is TypeScript, and tsx, which loads it, is not installed (${(error as Error).message})`,
      );
    },
  );
  return typescriptLoader;
}

/** Decodes TASK_DATA_INPUT as the platform sets it, for code that wants its arguments early. */
export function decodeTaskDataInput(input: string | undefined): unknown[] | undefined {
  return input === undefined || input === "" ? undefined : (decodeValue(input) as unknown[]);
}
