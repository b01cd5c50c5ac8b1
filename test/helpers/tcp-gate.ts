import { type AddressInfo, type Socket, connect, createServer } from "node:net";

/** A TCP forwarder to `host:port` that can be shut: then it drops every connection, old and new. */
export interface TcpGate {
  /** `127.0.0.1:<port>`: connect here instead of the target. */
  readonly address: string;
  shut(): void;
  open(): void;
  close(): Promise<void>;
}

export async function createTcpGate(target: { host: string; port: number }): Promise<TcpGate> {
  let shut = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    if (shut) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const shutNow = (): void => {
    shut = true;
    for (const socket of sockets) socket.destroy();
  };
  return {
    address: `127.0.0.1:${port}`,
    shut: shutNow,
    open() {
      shut = false;
    },
    close() {
      shutNow();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
