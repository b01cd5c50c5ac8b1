/**
 * The proxies between a cluster's daemons and PostgreSQL (one line per daemon,
 * `chaos/tcp-proxy.ts`), in a process of their own: the harness's own process is busy with the
 * load and dozens of watch streams, and a lag there must not delay a daemon's lease renewal and
 * read as a fault of the daemon. The harness blocks and unblocks lines over IPC.
 *
 * Run as a child (`fork`), it is the proxy; imported, {@link startStoreProxy} starts one.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createTcpProxy } from "./tcp-proxy.js";

export interface StoreProxy {
  /** `127.0.0.1:<port>` of each daemon's line. */
  readonly addresses: readonly string[];
  /** The proxy's process id. */
  readonly pid: number;
  /**
   * Cuts line `index`'s connections and refuses new ones for `ms`, timed in the proxy's own
   * process (a lagging harness must not stretch the cut); resolves when the line is open again:
   * how many connections were cut, and when (epoch ms) it was cut and opened again.
   */
  cutFor(index: number, ms: number): Promise<{ cut: number; from: number; to: number }>;
  close(): Promise<void>;
}

type Request = { id: number; line: number; ms: number };
type CutReply = { id: number; cut: number; from: number; to: number };
type Reply = CutReply | { ready: readonly string[] } | { error: string };

/** Starts the proxy process in front of `target` (`host:port`), with `lines` lines. */
export async function startStoreProxy(target: string, lines: number): Promise<StoreProxy> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [target, String(lines)], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const waiting = new Map<number, (reply: CutReply) => void>();
  let next = 0;
  const addresses = await new Promise<readonly string[]>((resolve, reject) => {
    child.on("message", (message: Reply) => {
      if ("ready" in message) resolve(message.ready);
      else if ("error" in message) reject(new Error(`the store proxy failed: ${message.error}`));
      else waiting.get(message.id)?.(message);
    });
    void exited.then(() => reject(new Error("the store proxy exited before it was ready")));
  });
  return {
    addresses,
    pid: child.pid ?? 0,
    cutFor: (line, ms) =>
      new Promise<CutReply>((resolve, reject) => {
        const id = ++next;
        waiting.set(id, (reply) => {
          waiting.delete(id);
          resolve(reply);
        });
        child.send({ id, line, ms } satisfies Request, (error) => error && reject(error));
      }),
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

// ---- the child ---------------------------------------------------------------------------
if (process.argv[1] === fileURLToPath(import.meta.url) && process.send !== undefined) {
  const send = process.send.bind(process);
  const [target, lines] = process.argv.slice(2) as [string, string];
  createTcpProxy(target, Number(lines)).then(
    (proxy) => {
      process.on("message", (request: Request) => {
        const from = Date.now();
        const cut = proxy.block(request.line);
        setTimeout(() => {
          proxy.unblock(request.line);
          send({ id: request.id, cut, from, to: Date.now() } satisfies Reply);
        }, request.ms);
      });
      // The harness gone, nothing is left to proxy for.
      process.on("disconnect", () => process.exit(0));
      process.on("SIGTERM", () => void proxy.close().then(() => process.exit(0)));
      send({ ready: proxy.addresses } satisfies Reply);
    },
    (error: unknown) => {
      send({ error: String(error) } satisfies Reply);
      process.exit(1);
    },
  );
}
