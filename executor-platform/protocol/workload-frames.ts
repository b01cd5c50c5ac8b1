/**
 * The workload protocol without gRPC: the same WorkloadMessage and DaemonMessage, framed on a
 * private unix socket. A workload process that loads no gRPC starts about 30 ms sooner, which
 * is most of what a process-mode instance costs beyond `node` itself.
 *
 * A frame is one byte of kind, four bytes of length (big-endian) and the payload:
 * - kind 0: a protobuf message (WorkloadMessage from a workload, DaemonMessage from the daemon);
 * - kind 1: the daemon refuses the workload: JSON `{ "code": <gRPC status code>, "message": "…" }`,
 *   after which it closes the connection.
 *
 * This module imports neither gRPC nor the daemon, so the workload runner can load it alone.
 */

/** A frame's kind byte. */
export const FRAME_MESSAGE = 0;
export const FRAME_REFUSAL = 1;

const HEADER_BYTES = 5;

export interface Frame {
  readonly kind: number;
  readonly payload: Buffer;
}

/** A refusal's content: a gRPC status code and what is wrong. */
export interface Refusal {
  readonly code: number;
  readonly message: string;
}

/** Thrown by {@link FrameReader.push} for a frame no reader should take. */
export class FrameError extends Error {
  readonly code: number;

  constructor(code: number, message: string) {
    super(message);
    this.name = "FrameError";
    this.code = code;
  }
}

/** gRPC status codes the framed protocol uses, so that neither side needs gRPC to name them. */
export const STATUS = {
  INVALID_ARGUMENT: 3,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAUTHENTICATED: 16,
} as const;

export function encodeFrame(kind: number, payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  frame.writeUInt8(kind, 0);
  frame.writeUInt32BE(payload.length, 1);
  frame.set(payload, HEADER_BYTES);
  return frame;
}

export function encodeRefusal(refusal: Refusal): Buffer {
  return encodeFrame(
    FRAME_REFUSAL,
    Buffer.from(JSON.stringify({ code: refusal.code, message: refusal.message })),
  );
}

/** Reads a refusal frame's payload; a malformed one still reads as a refusal. */
export function decodeRefusal(payload: Buffer): Refusal {
  try {
    const value = JSON.parse(payload.toString("utf8")) as Partial<Refusal>;
    if (typeof value.code === "number" && typeof value.message === "string")
      return { code: value.code, message: value.message };
  } catch {
    // Falls through.
  }
  return { code: STATUS.INTERNAL, message: "the daemon refused this workload" };
}

/** Cuts a byte stream into frames, holding at most one frame's bytes. */
export class FrameReader {
  readonly #maxBytes: number;
  #buffered: Buffer[] = [];
  #length = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /**
   * The frames that `chunk` completes, in order.
   * @throws {FrameError} for an unknown kind or a frame larger than the limit.
   */
  push(chunk: Buffer): Frame[] {
    this.#buffered.push(chunk);
    this.#length += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.#length < HEADER_BYTES) break;
      const head = this.#peek(HEADER_BYTES);
      const kind = head.readUInt8(0);
      const size = head.readUInt32BE(1);
      if (kind !== FRAME_MESSAGE && kind !== FRAME_REFUSAL)
        throw new FrameError(STATUS.INVALID_ARGUMENT, `unknown frame kind ${kind}`);
      if (size > this.#maxBytes) {
        throw new FrameError(
          STATUS.RESOURCE_EXHAUSTED,
          `a frame of ${size} bytes is larger than the limit of ${this.#maxBytes}`,
        );
      }
      if (this.#length < HEADER_BYTES + size) break;
      const whole = this.#take(HEADER_BYTES + size);
      frames.push({ kind, payload: whole.subarray(HEADER_BYTES) });
    }
    return frames;
  }

  #peek(bytes: number): Buffer {
    if ((this.#buffered[0]?.length ?? 0) < bytes) this.#buffered = [Buffer.concat(this.#buffered)];
    return this.#buffered[0] as Buffer;
  }

  #take(bytes: number): Buffer {
    const all = this.#peek(bytes);
    const taken = all.subarray(0, bytes);
    const rest = all.subarray(bytes);
    this.#buffered = rest.length > 0 ? [rest, ...this.#buffered.slice(1)] : this.#buffered.slice(1);
    this.#length -= bytes;
    return taken;
  }
}
