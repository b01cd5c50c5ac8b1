import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import {
  ExecutorConfigError,
  ExecutorUnavailableError,
  TaskError,
  TaskInputError,
  type TaskErrorInfo,
  TaskNotFoundError,
} from "../../sdk/errors.js";
import type {
  InstancePage,
  InstanceQuery,
  InstanceSnapshot,
  TaskDefinition,
  TaskLogLine,
} from "../../sdk/executor.js";
import { STREAM_NAMES } from "../../sdk/log-lines.js";
import { failures } from "../../sdk/failures.js";
import {
  type InstanceChanges,
  type LogLines,
  type NewInstance,
  type Schedule,
  type SubmitResult,
  TaskServiceClient,
} from "../protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { channelTarget, wantsTls } from "./address.js";
import {
  errorFromWire,
  scheduleFromWire,
  scheduleToWire,
  logStreamFromWire,
  snapshotFromWire,
  specToWire,
  statusToWire,
} from "../protocol/wire.js";
import type { ScheduleRecord, ScheduleSnapshot } from "../../sdk/schedules.js";
import type { RunSpec } from "../../sdk/run-options.js";

/** Options of {@link GrpcConnection}. */
export interface GrpcConnectionOptions {
  readonly address: string;
  readonly accessToken?: string | undefined;
  readonly deploymentId?: string | undefined;
  readonly tlsCaFile?: string | undefined;
  /** Deadline of each unary call. Default 10 s. */
  readonly callTimeoutMs?: number;
}

/** A live watch stream; `cancel` ends it. */
export interface WatchStream {
  cancel(): void;
  /** Set by the owner once the stream delivered its first message. */
  live?: boolean;
}

/**
 * The platform executor's transport: the only module of the client that knows gRPC. Every
 * error it returns is an SDK error (see {@link toSdkError}).
 */
export class GrpcConnection {
  readonly address: string;
  readonly #client: TaskServiceClient;
  readonly #metadata: grpc.Metadata;
  readonly #timeoutMs: number;

  /** Why no call can be made (a CA file that cannot be read): every call fails with it. */
  readonly #broken: ExecutorConfigError | undefined;
  readonly #tls: boolean;

  constructor(options: GrpcConnectionOptions) {
    this.address = options.address;
    this.#timeoutMs = options.callTimeoutMs ?? 10_000;
    this.#tls = wantsTls(options.address) || options.tlsCaFile !== undefined;
    let credentials = grpc.credentials.createInsecure();
    try {
      credentials = clientCredentials(options.address, options.tlsCaFile);
    } catch (error) {
      this.#broken = error as ExecutorConfigError;
    }
    this.#client = new TaskServiceClient(channelTarget(options.address), credentials, {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.max_send_message_length": 64 * 1024 * 1024,
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1000,
    });
    this.#metadata = new grpc.Metadata();
    if (options.accessToken !== undefined)
      this.#metadata.set("authorization", `Bearer ${options.accessToken}`);
    if (options.deploymentId !== undefined) this.#metadata.set("x-numerous-deployment", options.deploymentId);
  }

  /** One result per instance, in order: the daemon's snapshot, or why it refused it. */
  async submit(
    requests: ReadonlyArray<Omit<NewInstance, "options"> & { readonly spec?: RunSpec | undefined }>,
  ): Promise<Array<{ snapshot: InstanceSnapshot } | { error: TaskErrorInfo }>> {
    const instances: NewInstance[] = requests.map(({ spec, ...rest }) => ({
      ...rest,
      options: spec === undefined ? undefined : specToWire(spec),
    }));
    const response = await this.#unary<{ results: SubmitResult[] }>((cb) =>
      this.#client.submit({ instances }, this.#metadata, this.#callOptions(), cb),
    );
    return response.results.map(({ outcome }) =>
      outcome?.$case === "instance"
        ? { snapshot: snapshotFromWire(outcome.value) }
        : {
            error: outcome === undefined ? failures.emptySubmitResult() : errorFromWire(outcome.value),
          },
    );
  }

  async get(id: string): Promise<InstanceSnapshot | undefined> {
    const response = await this.#unary<{ instance?: Parameters<typeof snapshotFromWire>[0] }>((cb) =>
      this.#client.getInstance({ id }, this.#metadata, this.#callOptions(), cb),
    );
    return response.instance === undefined ? undefined : snapshotFromWire(response.instance);
  }

  async list(query: InstanceQuery): Promise<InstancePage> {
    const response = await this.#unary<{
      instances: Parameters<typeof snapshotFromWire>[0][];
      nextCursor: string;
    }>((cb) =>
      this.#client.listInstances(
        {
          task: query.task ?? "",
          statuses: (query.status ?? []).map(statusToWire),
          limit: query.limit ?? 0,
          cursor: query.cursor ?? "",
        },
        this.#metadata,
        this.#callOptions(),
        cb,
      ),
    );
    return {
      instances: response.instances.map(snapshotFromWire),
      nextCursor: response.nextCursor || undefined,
    };
  }

  async listDefinitions(): Promise<TaskDefinition[]> {
    const response = await this.#unary<{ definitions: TaskDefinition[] }>((cb) =>
      this.#client.listDefinitions({}, this.#metadata, this.#callOptions(), cb),
    );
    return response.definitions.map(({ id, name }) => ({ id, name }));
  }

  async upsertSchedule(record: ScheduleRecord): Promise<ScheduleSnapshot> {
    const response = await this.#unary<{ schedule?: Schedule }>((cb) =>
      this.#client.upsertSchedule(
        { schedule: scheduleToWire(record) },
        this.#metadata,
        this.#callOptions(),
        cb,
      ),
    );
    if (response.schedule === undefined) throw new TaskError("TASK_FAILED", "the daemon sent no schedule");
    return scheduleFromWire(response.schedule);
  }

  async listSchedules(): Promise<ScheduleSnapshot[]> {
    const response = await this.#unary<{ schedules: Schedule[] }>((cb) =>
      this.#client.listSchedules({}, this.#metadata, this.#callOptions(), cb),
    );
    return response.schedules.map(scheduleFromWire);
  }

  async setSchedulePaused(name: string, paused: boolean): Promise<ScheduleSnapshot | undefined> {
    const response = await this.#unary<{ schedule?: Schedule }>((cb) =>
      this.#client.setSchedulePaused({ name, paused }, this.#metadata, this.#callOptions(), cb),
    );
    return response.schedule === undefined ? undefined : scheduleFromWire(response.schedule);
  }

  async deleteSchedule(name: string): Promise<boolean> {
    const response = await this.#unary<{ found: boolean }>((cb) =>
      this.#client.deleteSchedule({ name }, this.#metadata, this.#callOptions(), cb),
    );
    return response.found;
  }

  async triggerSchedule(name: string): Promise<InstanceSnapshot | undefined> {
    const response = await this.#unary<{ instance?: Parameters<typeof snapshotFromWire>[0] }>((cb) =>
      this.#client.triggerSchedule({ name }, this.#metadata, this.#callOptions(), cb),
    );
    return response.instance === undefined ? undefined : snapshotFromWire(response.instance);
  }

  async stop(id: string): Promise<boolean> {
    const response = await this.#unary<{ found: boolean }>((cb) =>
      this.#client.stopInstance({ id }, this.#metadata, this.#callOptions(), cb),
    );
    return response.found;
  }

  /**
   * Opens a watch of the deployment. `onChanges` gets each batch; `onEnd` once, with the SDK
   * error that ended it (or undefined when cancelled).
   */
  watch(
    from: { fromNow: true } | { afterSequence: number },
    onChanges: (sequence: number, snapshots: InstanceSnapshot[]) => void,
    onEnd: (error: TaskError | undefined) => void,
  ): WatchStream {
    const broken = this.#broken;
    if (broken !== undefined) {
      const failing = setImmediate(() => onEnd(broken));
      return { cancel: () => clearImmediate(failing) };
    }
    const call = this.#client.watchInstances(
      {
        ids: [],
        afterSequence: "afterSequence" in from ? from.afterSequence : 0,
        fromNow: "fromNow" in from,
      },
      this.#metadata,
    );
    let ended = false;
    const end = (error: TaskError | undefined) => {
      if (ended) return;
      ended = true;
      onEnd(error);
    };
    call.on("data", (changes: InstanceChanges) =>
      onChanges(changes.sequence, changes.instances.map(snapshotFromWire)),
    );
    call.on("error", (error: grpc.ServiceError) =>
      end(error.code === grpc.status.CANCELLED ? undefined : toSdkError(error, this.address, this.#tls)),
    );
    call.on("end", () =>
      end(new ExecutorUnavailableError(this.address, "the daemon closed the watch stream")),
    );
    return { cancel: () => call.cancel() };
  }

  /**
   * An instance's kept output, a message at a time, each with the cursor to resume after it.
   * Ending the iteration early, or `signal`, cancels the call.
   * @throws {TaskNotFoundError} for an id the daemon does not show this caller; other SDK errors
   *   as {@link toSdkError} maps them.
   */
  async *streamLogs(request: {
    id: string;
    follow: boolean;
    tail: number | undefined;
    afterCursor: number;
    signal?: AbortSignal | undefined;
  }): AsyncGenerator<{ cursor: number; lines: TaskLogLine[] }, void> {
    if (this.#broken !== undefined) throw this.#broken;
    const { signal, ...fields } = request;
    const call = this.#client.streamLogs(fields, this.#metadata);
    const cancel = () => call.cancel();
    signal?.addEventListener("abort", cancel, { once: true });
    try {
      for await (const message of call as AsyncIterable<LogLines>) {
        yield {
          cursor: message.cursor,
          lines: message.lines.map((line) => ({
            at: new Date(line.atMs),
            stream: STREAM_NAMES[logStreamFromWire(line.stream)],
            line: line.line,
          })),
        };
      }
    } catch (error) {
      throw toSdkError(error as grpc.ServiceError, this.address, this.#tls);
    } finally {
      signal?.removeEventListener("abort", cancel);
      call.cancel();
    }
  }

  close(): void {
    this.#client.close();
  }

  #callOptions(): grpc.CallOptions {
    return { deadline: Date.now() + this.#timeoutMs };
  }

  #unary<T>(start: (callback: (error: grpc.ServiceError | null, response: T) => void) => void): Promise<T> {
    if (this.#broken !== undefined) return Promise.reject(this.#broken);
    return new Promise<T>((resolve, reject) => {
      start((error, response) =>
        error ? reject(toSdkError(error, this.address, this.#tls)) : resolve(response),
      );
    });
  }
}

/**
 * The channel credentials for an executor address: TLS for `https://` or when a CA file is
 * given (that CA then is the only one trusted), plain otherwise.
 * @throws {ExecutorConfigError} naming NUMEROUS_EXECUTOR_TLS_CA when the file is not a PEM certificate.
 */
export function clientCredentials(address: string, tlsCaFile: string | undefined): grpc.ChannelCredentials {
  if (!wantsTls(address) && tlsCaFile === undefined) return grpc.credentials.createInsecure();
  if (tlsCaFile === undefined) return grpc.credentials.createSsl();
  let pem: Buffer;
  try {
    pem = readFileSync(tlsCaFile);
    new X509Certificate(pem);
  } catch (error) {
    throw new ExecutorConfigError(
      "NUMEROUS_EXECUTOR_TLS_CA",
      tlsCaFile,
      `not a readable PEM certificate: ${(error as Error).message}`,
    );
  }
  return grpc.credentials.createSsl(pem);
}

/**
 * Why a daemon could not be reached, without gRPC's wrapping, and what to check when TLS is
 * the likely reason (a plain client and a TLS daemon, or the reverse, or an untrusted certificate).
 */
export function unavailableDetail(details: string, tls: boolean): string {
  const reason = details
    .replace(/^No connection established\. Last error: (Error: )?/, "")
    .replace(/\.?\s*Resolution note:\s*$/, "")
    .trim();
  let hint: string | undefined;
  if (/ECONNREFUSED|ENOENT/.test(reason)) hint = undefined;
  else if (tls && /certificate has expired/i.test(reason)) hint = "the daemon's TLS certificate has expired";
  else if (tls && /certificate|self[- ]signed|unable to (verify|get)|issuer|altnames/i.test(reason)) {
    hint =
      "the daemon's TLS certificate is not trusted for this address: set NUMEROUS_EXECUTOR_TLS_CA to the PEM file of the CA that signed it";
  } else if (
    tls &&
    /wrong version number|packet length|unexpected eof|ECONNRESET|socket disconnected/i.test(reason)
  ) {
    hint = "the daemon does not seem to serve TLS: drop https:// and NUMEROUS_EXECUTOR_TLS_CA";
  } else if (!tls && /Failed to connect|Connection dropped|ECONNRESET|Protocol error/i.test(reason)) {
    hint = "if the daemon serves TLS, use an https:// address or set NUMEROUS_EXECUTOR_TLS_CA";
  }
  return hint === undefined ? reason : `${reason} (${hint})`;
}

/**
 * The one place where a gRPC status becomes an SDK error on the client side.
 * @param tls whether the call went over TLS, to explain a connection that failed.
 */
export function toSdkError(error: grpc.ServiceError, address: string, tls = false): TaskError {
  const details = error.details || error.message;
  switch (error.code) {
    case grpc.status.UNAVAILABLE:
      return new ExecutorUnavailableError(address, unavailableDetail(details, tls));
    case grpc.status.DEADLINE_EXCEEDED:
      return new ExecutorUnavailableError(address, details);
    case grpc.status.UNAUTHENTICATED:
    case grpc.status.PERMISSION_DENIED:
      return new ExecutorConfigError(
        "NUMEROUS_API_ACCESS_TOKEN",
        undefined,
        `the daemon at ${address} refused the call: ${details}`,
      );
    case grpc.status.INVALID_ARGUMENT: {
      // The daemon names the bad option first ("cron: ..."): the error's path says which.
      const named = /^([A-Za-z][\w.]*): (.*)$/s.exec(details);
      return named === null
        ? new TaskInputError("request", details)
        : new TaskInputError(named[1] as string, named[2] as string);
    }
    case grpc.status.RESOURCE_EXHAUSTED:
      return new TaskInputError("request", `too large for the daemon: ${details}`);
    case grpc.status.NOT_FOUND:
      return new TaskNotFoundError(details);
    default:
      return new TaskError(
        "EXECUTOR_ERROR",
        `the task executor at ${address} answered ${grpc.status[error.code] ?? error.code}: ${details}`,
      );
  }
}
