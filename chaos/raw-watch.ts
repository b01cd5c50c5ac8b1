/**
 * A watch of the daemon's instance changes over the generated gRPC client, resuming after
 * every break from the last sequence it saw, as the protocol tells clients to. The harness
 * uses it where the SDK's own watch would hide what it wants to see: every revision as it
 * arrives, each stream on its own connection, and streams that stop reading.
 */
import * as grpc from "@grpc/grpc-js";
import type {
  Instance,
  InstanceChanges,
} from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import {
  TaskServiceClient,
  WatchInstancesRequest,
} from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";

/** Options of {@link RawWatch}. */
export interface RawWatchOptions {
  /** `host:port` or `unix:/path`. */
  readonly address: string;
  /** Only these instances; empty or undefined for the whole deployment. */
  readonly ids?: readonly string[];
  /** A connection of its own rather than one shared with other clients of the address. */
  readonly ownConnection?: boolean;
  readonly onChanges: (instances: readonly Instance[], at: number) => void;
  /** After the first message of every (re)opened stream. */
  readonly onOpen?: () => void;
  /** When a stream broke and a new one will be opened. */
  readonly onBreak?: () => void;
}

export class RawWatch {
  readonly #options: RawWatchOptions;
  readonly #client: TaskServiceClient;
  #call: grpc.ClientReadableStream<InstanceChanges> | undefined;
  #closed = false;
  #sequence = 0;
  #broke = false;
  /** Streams that opened again after a break. */
  resumes = 0;
  /** Messages received, over all streams. */
  messages = 0;
  /** How the last few streams ended. */
  readonly breaks: string[] = [];

  constructor(options: RawWatchOptions) {
    this.#options = options;
    this.#client = new TaskServiceClient(options.address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 256 * 1024 * 1024,
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1000,
      ...(options.ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {}),
    });
    this.#open();
  }

  /** The highest sequence seen: where the next stream resumes. */
  get sequence(): number {
    return this.#sequence;
  }

  close(): void {
    this.#closed = true;
    this.#call?.cancel();
    this.#client.close();
  }

  #open(): void {
    if (this.#closed) return;
    const call = this.#client.watchInstances(
      WatchInstancesRequest.create({
        ids: [...(this.#options.ids ?? [])],
        afterSequence: this.#sequence,
        fromNow: false,
      }),
    );
    this.#call = call;
    let first = true;
    let broken = false;
    call.on("data", (changes: InstanceChanges) => {
      this.messages++;
      this.#sequence = Math.max(this.#sequence, changes.sequence);
      if (first) {
        first = false;
        if (this.#broke) this.resumes++;
        this.#broke = false;
        this.#options.onOpen?.();
      }
      if (changes.instances.length > 0) this.#options.onChanges(changes.instances, Date.now());
    });
    const again = (error?: grpc.ServiceError) => {
      if (broken || this.#closed || this.#call !== call) return;
      this.breaks.push(
        `${new Date().toISOString()} ${error === undefined ? "ended" : `${grpc.status[error.code] ?? error.code}: ${error.details}`}`,
      );
      if (this.breaks.length > 5) this.breaks.shift();
      broken = true;
      this.#broke = true;
      this.#options.onBreak?.();
      setTimeout(() => this.#open(), 100 + Math.floor(Math.random() * 200));
    };
    call.on("error", (error: grpc.ServiceError) => again(error));
    call.on("end", () => again());
  }
}
