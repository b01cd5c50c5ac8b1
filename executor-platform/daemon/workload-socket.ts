import { EventEmitter } from "node:events";
import { type Server, type Socket, createServer } from "node:net";
import type * as grpc from "@grpc/grpc-js";
import { DaemonMessage, WorkloadMessage } from "../protocol/generated/messages/numerous/tasks/v1/tasks_pb.js";
import {
  FRAME_MESSAGE,
  FrameError,
  FrameReader,
  STATUS,
  encodeFrame,
  encodeRefusal,
} from "../protocol/workload-frames.js";

/**
 * One workload's stream, as the daemon handles it, whether it came over gRPC (the public
 * address) or as frames on the private socket: the events and calls of a gRPC duplex stream
 * that the daemon uses. Emitting "error" with a status refuses the workload and ends the stream.
 */
export interface WorkloadCall {
  on(event: "data", listener: (message: WorkloadMessage) => void): unknown;
  on(event: "end" | "cancelled", listener: () => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
  emit(event: "error", error: grpc.ServiceError): boolean;
  write(message: DaemonMessage): unknown;
  end(): unknown;
}

/** A {@link WorkloadCall} over a unix socket speaking the framed protocol of workload-frames.ts. */
class FramedWorkloadCall extends EventEmitter implements WorkloadCall {
  readonly #socket: Socket;
  #over = false;

  constructor(socket: Socket, maxMessageBytes: number) {
    super();
    this.#socket = socket;
    const reader = new FrameReader(maxMessageBytes);
    socket.on("data", (chunk: Buffer) => {
      if (this.#over) return;
      let frames: ReturnType<FrameReader["push"]>;
      try {
        frames = reader.push(chunk);
      } catch (error) {
        const code = error instanceof FrameError ? error.code : STATUS.INVALID_ARGUMENT;
        this.#refuse(code, (error as Error).message);
        return;
      }
      for (const frame of frames) {
        if (this.#over) return;
        if (frame.kind !== FRAME_MESSAGE)
          return this.#refuse(STATUS.INVALID_ARGUMENT, "a workload sends messages only");
        let message: WorkloadMessage;
        try {
          message = WorkloadMessage.decode(frame.payload);
        } catch {
          return this.#refuse(STATUS.INVALID_ARGUMENT, "malformed workload message");
        }
        super.emit("data", message);
      }
    });
    socket.on("end", () => {
      if (this.#over) return;
      this.#over = true;
      super.emit("end");
    });
    socket.on("error", () => {
      // "close" follows.
    });
    socket.on("close", () => {
      if (this.#over) return;
      this.#over = true;
      super.emit("cancelled");
    });
  }

  /** As a gRPC server stream: "error" with a status refuses the workload with it. */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === "error") {
      const error = args[0] as Partial<grpc.ServiceError>;
      this.#send(
        encodeRefusal({
          code: error.code ?? STATUS.INTERNAL,
          message: error.details ?? error.message ?? "refused",
        }),
      );
      this.#socket.end();
      const listened = super.emit("error", args[0]);
      this.#over = true;
      return listened;
    }
    return super.emit(event, ...args);
  }

  write(message: DaemonMessage): boolean {
    return this.#send(encodeFrame(FRAME_MESSAGE, DaemonMessage.encode(message).finish()));
  }

  end(): void {
    this.#socket.end();
  }

  #refuse(code: number, message: string): void {
    this.emit("error", Object.assign(new Error(message), { code, details: message }));
  }

  #send(frame: Buffer): boolean {
    if (this.#socket.destroyed || this.#socket.writableEnded) return false;
    return this.#socket.write(frame);
  }
}

/** The private socket's server: hands each connection to `onWorkload` as a {@link WorkloadCall}. */
export function createWorkloadSocketServer(
  maxMessageBytes: number,
  onWorkload: (call: WorkloadCall) => void,
): WorkloadSocketServer {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    onWorkload(new FramedWorkloadCall(socket, maxMessageBytes));
  });
  return {
    listen: (path) =>
      new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(path, () => {
          server.off("error", reject);
          resolve();
        });
      }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

export interface WorkloadSocketServer {
  listen(path: string): Promise<void>;
  /** Stops listening and cuts every connection (after the daemon has said what it had to). */
  close(): Promise<void>;
}
