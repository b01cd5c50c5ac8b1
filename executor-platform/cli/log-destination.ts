import { createWriteStream, fstatSync } from "node:fs";
import { Socket } from "node:net";
import type { Writable } from "node:stream";
import { WriteStream } from "node:tty";

/**
 * Where the daemon's log lines go. Lines are written asynchronously, with at most
 * `maxBufferedBytes` waiting: a reader that stops reading costs log lines, never the daemon (a
 * synchronous write to a full pipe would stop its event loop). Lines past the bound are dropped
 * and counted; once the reader has taken what waited, one line says how many were lost.
 */
export class LogDestination {
  readonly #stream: Writable;
  readonly #max: number;
  #dropped = 0;
  #droppedSince = 0;
  #broken = false;

  constructor(stream: Writable, maxBufferedBytes: number) {
    this.#stream = stream;
    this.#max = maxBufferedBytes;
    // A reader that went away: what is left to log is dropped, quietly.
    stream.on("error", () => {
      this.#broken = true;
    });
  }

  /** Called by pino with one serialised line. */
  write(line: string): boolean {
    if (this.#broken) return true;
    if (this.#stream.writableLength + line.length > this.#max) {
      if (this.#dropped === 0) this.#droppedSince = Date.now();
      this.#dropped++;
      return true;
    }
    this.#stream.write(line, this.#written);
    return true;
  }

  /** After each write reaches the OS: once nothing waits, what was dropped is reported. */
  readonly #written = (): void => {
    if (this.#dropped > 0 && this.#stream.writableLength === 0) this.#report();
  };

  /** Resolves once what waits is written, or after `timeoutMs` (a stalled reader keeps the rest). */
  flush(timeoutMs: number): Promise<void> {
    if (this.#broken || this.#stream.writableLength === 0) return Promise.resolve();
    return new Promise<void>((done) => {
      const timer = setTimeout(done, timeoutMs);
      // Written after everything that waits, so its callback comes once they are out.
      this.#stream.write("", () => {
        clearTimeout(timer);
        done();
      });
    });
  }

  #report(): void {
    const dropped = this.#dropped;
    if (dropped === 0 || this.#broken) return;
    this.#dropped = 0;
    const line = JSON.stringify({
      level: 40,
      time: Date.now(),
      service: "numerous-executor",
      dropped,
      since: this.#droppedSince,
      msg: "log lines were dropped: the log reader was not reading",
    });
    this.#stream.write(`${line}\n`);
  }
}

/**
 * Standard output as a stream that never blocks the event loop: a pipe or socket through a
 * non-blocking handle (process.stdout writes to pipes synchronously on Linux), a terminal or a
 * file as node opens them.
 */
export function openStdoutDestination(maxBufferedBytes: number): LogDestination {
  let stream: Writable;
  const stat = fstatSync(1);
  if (stat.isFIFO() || stat.isSocket()) stream = new Socket({ fd: 1, readable: false, writable: true });
  else if (stat.isCharacterDevice() && process.stdout.isTTY) stream = new WriteStream(1);
  else stream = createWriteStream("", { fd: 1, autoClose: false });
  return new LogDestination(stream, maxBufferedBytes);
}
