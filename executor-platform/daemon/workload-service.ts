import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { isEncodedValue } from "../../sdk/codec.js";
import { failures } from "../../sdk/failures.js";
import { isTerminalStatus } from "../../sdk/task-status.js";
import type {
  Finished,
  Hello,
  Log,
  WorkloadMessage,
} from "../protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { errorFromWire, logStreamFromWire, statusFromWire } from "../protocol/wire.js";
import type { ActiveInstance } from "./active-instance.js";
import type { DaemonMetrics } from "./daemon-metrics.js";
import type { DaemonState } from "./daemon-options.js";
import { serviceError } from "./grpc-status.js";
import type { InstanceTable } from "./instance-table.js";
import type { LogKeeper } from "./log-keeper.js";
import type { RunQueue } from "./run-queue.js";
import type { Worker, Workers } from "./workers.js";
import type { WorkloadLauncher } from "./workload-launcher.js";
import type { WorkloadCall } from "./workload-socket.js";
import type { WorkloadTokens } from "./workload-token.js";

export interface WorkloadServiceOptions {
  readonly table: InstanceTable;
  readonly queue: RunQueue;
  readonly workers: Workers;
  readonly launcher: () => WorkloadLauncher;
  readonly tokens: WorkloadTokens;
  readonly state: DaemonState;
  readonly log: Logger;
  readonly metrics?: DaemonMetrics | undefined;
  readonly logs: LogKeeper;
}

/**
 * The daemon's side of each workload's stream (framed on the private socket, or gRPC): who it
 * is, what its task reports, how it ends, and the workloads of an earlier daemon reattaching.
 */
export class WorkloadService {
  readonly #o: WorkloadServiceOptions;

  constructor(options: WorkloadServiceOptions) {
    this.#o = options;
  }

  /** Serves one workload stream. */
  connect(call: WorkloadCall): void {
    let worker: Worker | undefined;
    let refused = false;
    const refuse = (code: grpc.status, message: string) => {
      refused = true;
      this.#o.log.warn({ code, message }, "refused a workload message");
      call.emit("error", serviceError(code, message));
    };
    call.on("data", (message: WorkloadMessage) => {
      // Once refused, the stream is over: nothing more it says counts. After a shutdown, the
      // workload tells the next daemon.
      if (refused || this.#o.state.stopped) return;
      try {
        const kind = message.kind;
        if (kind === undefined) return refuse(grpc.status.INVALID_ARGUMENT, "empty workload message");
        if (kind.$case === "hello") {
          if (worker !== undefined) return refuse(grpc.status.INVALID_ARGUMENT, "hello sent twice");
          worker = this.#hello(call, kind.value);
          if (worker === undefined) {
            return refuse(grpc.status.PERMISSION_DENIED, "the workload token does not allow this instance");
          }
          return;
        }
        if (worker === undefined)
          return refuse(grpc.status.FAILED_PRECONDITION, "a workload must say hello first");
        const instanceId = kind.value.instanceId;
        if (kind.$case === "log") {
          // Output that comes after its instance ended here (said again after a reconnect) is
          // not that instance's any more to add to.
          if (instanceId === worker.instanceId) this.#onLog(worker, kind.value);
          return;
        }
        if (instanceId !== worker.instanceId) {
          // The end of an earlier instance, said again after a reconnect.
          if (kind.$case === "finished" && this.#lateFinished(worker, instanceId, kind.value)) return;
          return refuse(
            grpc.status.PERMISSION_DENIED,
            `this workload runs ${worker.instanceId ?? "nothing"}, not ${instanceId}`,
          );
        }
        const active = this.#o.table.get(instanceId);
        if (active === undefined || isTerminalStatus(active.row.status)) return;
        if (kind.$case === "progress") {
          const value = kind.value.value;
          if (!(value >= 0 && value <= 1)) {
            this.#o.log.warn(
              { instance: instanceId, value },
              "ignored progress out of range from a workload",
            );
            return;
          }
          this.#o.table.change(active, { progress: value });
        } else if (kind.$case === "output") {
          if (!isEncodedValue(kind.value.output)) {
            return refuse(grpc.status.INVALID_ARGUMENT, "output not encoded by the codec");
          }
          this.#o.table.change(active, { output: kind.value.output });
        } else if (kind.$case === "finished") {
          this.#onFinished(worker, active, kind.value);
        } else if (kind.$case === "started") {
          this.#o.queue.functionStarted(active);
        }
      } catch (error) {
        this.#o.log.error({ err: error }, "workload message failed");
        refuse(grpc.status.INTERNAL, "the daemon could not handle that message");
      }
    });
    const closed = () => {
      if (worker === undefined) return;
      const current = worker;
      if (current.call === call) current.call = undefined;
      // A process we started is judged at its exit; one that reattached after a restart, now.
      if (current.child === undefined)
        this.gone(current, "the workload disconnected before reporting a result");
    };
    call.on("end", () => {
      // Also what a truncated first message looks like: gRPC drops the partial frame.
      if (worker === undefined && !refused) {
        return refuse(grpc.status.FAILED_PRECONDITION, "the workload stream ended before it said hello");
      }
      closed();
      call.end();
    });
    call.on("error", closed);
    call.on("cancelled", closed);
  }

  /** A workload exited or disconnected: the instance it ran, if it had not ended, ends with it. */
  gone(worker: Worker, reason: string): void {
    const { table, workers, queue } = this.#o;
    if (!workers.remove(worker)) return;
    const ran = worker.startFor ?? worker.instanceId;
    if (ran !== undefined) this.#o.logs.close(ran);
    const active = worker.instanceId === undefined ? undefined : table.get(worker.instanceId);
    if (active !== undefined && active.worker === worker && !isTerminalStatus(active.row.status)) {
      const error = failures.workloadExited(reason, worker.tail.toString());
      this.#o.metrics?.workloadCrashed(active.row.taskName);
      if (worker.exitCode !== undefined) table.change(active, { exitCode: worker.exitCode });
      workers.detach(worker);
      queue.finish(active, active.stopRequested ? "cancelled" : "failed", { error });
    }
    this.#o.launcher().gone(worker);
  }

  #hello(call: WorkloadCall, hello: Hello): Worker | undefined {
    const { workers, table, queue } = this.#o;
    const { workloadToken: token, instanceId, pid } = hello;
    const allowed = this.#o.tokens.check(token, instanceId);
    if (allowed === undefined) return undefined;
    // A worker we started.
    for (const worker of workers.all()) {
      if (worker.call !== undefined || worker.gone || worker.child?.pid !== pid) continue;
      const mine =
        allowed === "instance"
          ? worker.startFor === instanceId && !worker.pool && !worker.warm
          : allowed === "warm"
            ? worker.warm && instanceId === ""
            : worker.pool && instanceId === "";
      if (!mine) continue;
      worker.call = call;
      this.#o.launcher().helloFrom(worker);
      return worker;
    }
    // A pool worker from before a restart with nothing running: adopted, it serves like the rest.
    // Beyond the pool's size (the daemon started its own meanwhile), it only says the ends it
    // kept; once they are acknowledged its stream ends, and a worker with nothing left exits.
    if (instanceId === "" && allowed === "pool") {
      const adopted = this.#o.launcher().adopts();
      const worker = workers.add({ pool: true, pid: pid > 0 ? pid : undefined, call });
      this.#o.log.info({ pid, adopted }, "pool workload reattached");
      if (adopted) {
        workers.idle.push(worker);
        queue.pump();
      } else worker.retiring = true;
      return worker;
    }
    // A workload from before a restart, reattaching to its running instance.
    if (instanceId !== "") {
      const active = table.get(instanceId);
      if (active && active.row.status === "running" && active.worker === undefined) {
        const retiring = allowed === "pool" && !this.#o.launcher().adopts();
        const worker = workers.add({
          pool: allowed === "pool",
          pid: pid > 0 ? pid : undefined,
          call,
          instanceId,
          startFor: instanceId,
        });
        worker.retiring = retiring;
        active.worker = worker;
        clearTimeout(active.orphanTimer);
        this.#o.log.info({ instance: instanceId }, "workload reattached");
        if (active.stopRequested) {
          const timeoutMs = active.timedOut ? (active.row.spec?.timeoutMs ?? 0) : 0;
          workers.send(worker, { kind: { $case: "stop", value: { instanceId, timeoutMs } } });
        } else if (hello.stopRequestedAtMs > 0) {
          // A stop the daemon before this one acknowledged: its grace period runs on from then.
          const graceLeftMs = queue.stopRequested(active, hello.stopRequestedAtMs);
          this.#o.log.info(
            { instance: instanceId, graceLeftMs },
            "reattached workload was stopped before the restart",
          );
        }
        return worker;
      }
    }
    return undefined;
  }

  /** A worker may repeat the end of an instance it ran before (it was not acknowledged yet). */
  #lateFinished(worker: Worker, instanceId: string, finished: Finished): boolean {
    if (!worker.pool && worker.startFor !== instanceId) return false;
    const active = this.#o.table.get(instanceId);
    if (active === undefined) {
      // Already recorded: the acknowledgement was what got lost.
      void this.#o.table.latest(instanceId).then((row) => {
        if (row !== undefined && isTerminalStatus(row.status)) this.#acknowledge(worker, instanceId);
      });
      return true;
    }
    if (active.row.status !== "running" || active.worker !== undefined) return false;
    this.#onFinished(worker, active, finished);
    return true;
  }

  #onLog(worker: Worker, log: Log): void {
    const lines = log.lines.map((line) => ({ ...line, stream: logStreamFromWire(line.stream) }));
    this.#o.logs.append(log.instanceId, lines, log.droppedLines, log.droppedBytes);
    // What it says on stderr is what a crash report quotes, as a process-mode workload's pipe.
    for (const line of lines) if (line.stream === 1) worker.tail.push(Buffer.from(`${line.line}\n`));
  }

  #onFinished(worker: Worker, active: ActiveInstance, finished: Finished): void {
    const { queue, workers, table } = this.#o;
    const status = statusFromWire(finished.status);
    if (finished.cpuSeconds !== undefined || finished.peakMemoryBytes !== undefined || !worker.pool) {
      table.change(active, {
        cpuSeconds: finished.cpuSeconds,
        peakMemoryBytes: finished.peakMemoryBytes,
        // A process-mode workload exits with 0 once its end is recorded; a pool worker goes on.
        exitCode: worker.pool ? undefined : 0,
      });
    }
    if (worker.pool) this.#o.logs.close(active.row.id);
    if (status !== "completed" && status !== "failed" && status !== "cancelled") {
      queue.finish(active, "failed", { error: failures.finishedWithoutStatus() });
    } else {
      queue.finish(active, status, {
        result: finished.result,
        error: finished.error === undefined ? undefined : errorFromWire(finished.error),
        // The last output, said again with the end in case its own message was lost.
        output:
          finished.output !== undefined && isEncodedValue(finished.output) ? finished.output : undefined,
      });
    }
    const instanceId = active.row.id;
    if (active.worker === worker) active.worker = undefined;
    if (worker.instanceId === instanceId) {
      worker.instanceId = undefined;
      // A pool worker takes its next instance while this end is being written: it keeps the
      // end until the acknowledgement, and says it again to whoever listens after a crash.
      if (worker.pool && !worker.gone && !worker.retiring) {
        workers.idle.push(worker);
        queue.pump();
      }
    }
    void table.durable().then(() => this.#acknowledge(worker, instanceId));
  }

  /** Tells a worker its end of the instance is durable; a retiring worker with nothing running is let go. */
  #acknowledge(worker: Worker, instanceId: string): void {
    this.#o.workers.send(worker, { kind: { $case: "finishedAck", value: { instanceId } } });
    if (worker.retiring && worker.instanceId === undefined) worker.call?.end();
  }
}
