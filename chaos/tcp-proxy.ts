/**
 * A TCP proxy the harness controls: clients connect to it instead of the daemon, and
 * {@link TcpProxy.cut} destroys connections mid-stream, as a flaky network or a restarted load
 * balancer would. Each listening port is one "line", so clients on different lines get
 * different TCP connections even where gRPC would share one. A frozen line stops reading what
 * the daemon sends, so the daemon's writes back up as they would toward a client that does
 * not read its stream. A blocked line is a network cut that lasts: it drops what is open and
 * refuses what comes until unblocked (in a cluster run, between a daemon and PostgreSQL).
 */
import { type AddressInfo, type Server, type Socket, connect, createServer } from "node:net";

export interface TcpProxy {
  /** `127.0.0.1:<port>` of each line. */
  readonly addresses: readonly string[];
  /** Connections open now, over all lines. */
  readonly open: number;
  /** Connections {@link cut} on a line between two moments (epoch ms). */
  cutsOn(line: number, from?: number, to?: number): number;
  /** Destroys every open connection of the given lines (default all); returns how many. */
  cut(lines?: readonly number[]): number;
  /** Stops passing on what the daemon sends on this line, now and for new connections. */
  freeze(line: number): void;
  /** Passes on again what the daemon sent, and everything after. */
  thaw(line: number): void;
  /** Cuts the line's open connections and refuses new ones until {@link unblock}; returns how many were cut. */
  block(line: number): number;
  unblock(line: number): void;
  close(): Promise<void>;
}

interface Pair {
  readonly client: Socket;
  readonly daemon: Socket;
}

interface Line {
  readonly server: Server;
  readonly pairs: Set<Pair>;
  frozen: boolean;
  blocked: boolean;
  /** When each connection of the line was cut. */
  readonly cuts: number[];
}

/** `target` is `host:port` or `unix:/path`. */
export async function createTcpProxy(target: string, count: number): Promise<TcpProxy> {
  const lines: Line[] = [];
  const addresses: string[] = [];
  const upstream = () =>
    target.startsWith("unix:")
      ? connect({ path: target.slice("unix:".length) })
      : connect({
          host: target.slice(0, target.lastIndexOf(":")),
          port: Number(target.slice(target.lastIndexOf(":") + 1)),
        });

  for (let i = 0; i < count; i++) {
    const server = createServer((client) => {
      if (line.blocked) {
        client.destroy();
        return;
      }
      const pair: Pair = { client, daemon: upstream() };
      line.pairs.add(pair);
      const close = () => {
        line.pairs.delete(pair);
        client.destroy();
        pair.daemon.destroy();
      };
      for (const socket of [client, pair.daemon]) {
        socket.on("error", close);
        socket.on("close", close);
      }
      client.pipe(pair.daemon);
      if (line.frozen) pair.daemon.pause();
      else pair.daemon.pipe(client);
    });
    const line: Line = { server, pairs: new Set(), frozen: false, blocked: false, cuts: [] };
    lines.push(line);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    addresses.push(`127.0.0.1:${(server.address() as AddressInfo).port}`);
  }

  const cut = (which?: readonly number[]): number => {
    let n = 0;
    for (const index of which ?? lines.map((_, i) => i)) {
      const line = lines[index];
      if (line === undefined) continue;
      for (const pair of [...line.pairs]) {
        n++;
        line.cuts.push(Date.now());
        pair.client.destroy();
        pair.daemon.destroy();
      }
      line.pairs.clear();
    }
    return n;
  };

  return {
    addresses,
    get open() {
      return lines.reduce((sum, line) => sum + line.pairs.size, 0);
    },
    cutsOn(index, from = 0, to = Number.POSITIVE_INFINITY) {
      return lines[index]?.cuts.filter((at) => at >= from && at <= to).length ?? 0;
    },
    cut,
    freeze(index) {
      const line = lines[index];
      if (line === undefined || line.frozen) return;
      line.frozen = true;
      for (const pair of line.pairs) {
        pair.daemon.unpipe(pair.client);
        pair.daemon.pause();
      }
    },
    thaw(index) {
      const line = lines[index];
      if (line === undefined || !line.frozen) return;
      line.frozen = false;
      for (const pair of line.pairs) pair.daemon.pipe(pair.client);
    },
    block(index) {
      const line = lines[index];
      if (line === undefined) return 0;
      line.blocked = true;
      return cut([index]);
    },
    unblock(index) {
      const line = lines[index];
      if (line !== undefined) line.blocked = false;
    },
    async close() {
      for (const line of lines) {
        for (const pair of line.pairs) {
          pair.client.destroy();
          pair.daemon.destroy();
        }
      }
      await Promise.all(
        lines.map((line) => new Promise<void>((resolve) => line.server.close(() => resolve()))),
      );
    },
  };
}
