import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { AccessControl } from "../daemon/access-control.js";
import { removeStaleSocket } from "../daemon/socket-file.js";

/**
 * Who may call a route. `deployment`: a token for the deployment the request names in
 * `x-numerous-deployment` (the default one when absent), as every gRPC call; `operator`: a token
 * granted every deployment (`*`), for what shows all of them at once (metrics); `public`: anyone
 * who reaches the port. With no tokens configured (loopback only), everyone is let in.
 */
export type RouteAccess = "deployment" | "operator" | "public";

/** What the server learned of a request before its handler runs. */
export interface RouteContext {
  readonly url: URL;
  /** The deployment the caller may see (`*` for an operator route). */
  readonly deployment: string;
}

export type RouteHandler = (
  request: IncomingMessage,
  response: ServerResponse,
  context: RouteContext,
) => void | Promise<void>;

export interface RouteOptions {
  readonly access: RouteAccess;
}

/** Options of {@link createHttpServer}. */
export interface HttpServerOptions {
  readonly access: AccessControl;
  readonly log: Logger;
  /** Serve HTTPS with this identity (the daemon's gRPC one). */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer } | undefined;
}

/** The daemon's HTTP port: a small router that features (metrics, the console) add routes to. */
export interface HttpServer {
  /**
   * Adds a route. `path` is exact, or ends in `/*` for everything under it. HEAD is answered by
   * a GET route.
   * @throws {Error} for a method and path already routed.
   */
  route(method: string, path: string, options: RouteOptions, handler: RouteHandler): void;
  /** Binds `host:port` (port 0 picks one) or `unix:/path`; resolves the bound address. */
  listen(address: string): Promise<string>;
  /** Stops listening and cuts open connections (streams included). */
  close(): Promise<void>;
}

interface Route {
  readonly method: string;
  readonly path: string;
  readonly prefix: boolean;
  readonly access: RouteAccess;
  readonly handler: RouteHandler;
}

/** Query parameters that would put a secret in a URL (and so in logs and browser history). */
const TOKEN_PARAMETERS = ["access_token", "token"];

/**
 * Builds the HTTP server. Plain node:http: routes are few, and a console's server-sent events
 * need nothing more than a response left open, so a framework would not pay for itself.
 */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  return new HttpServerImpl(options);
}

class HttpServerImpl implements HttpServer {
  readonly #o: HttpServerOptions;
  readonly #routes: Route[] = [];
  readonly #server: Server;

  constructor(options: HttpServerOptions) {
    this.#o = options;
    const serve = (request: IncomingMessage, response: ServerResponse) => this.#serve(request, response);
    this.#server =
      options.tls === undefined ? createServer(serve) : createTlsServer({ ...options.tls }, serve);
    // A client that never finishes sending its request holds a socket no longer than this.
    this.#server.headersTimeout = 10_000;
    this.#server.requestTimeout = 30_000;
  }

  route(method: string, path: string, options: RouteOptions, handler: RouteHandler): void {
    const prefix = path.endsWith("/*");
    const base = prefix ? path.slice(0, -1) : path;
    const upper = method.toUpperCase();
    if (
      this.#routes.some((route) => route.method === upper && route.path === base && route.prefix === prefix)
    ) {
      throw new Error(`${upper} ${path} is already routed`);
    }
    this.#routes.push({ method: upper, path: base, prefix, access: options.access, handler });
  }

  async listen(address: string): Promise<string> {
    const server = this.#server;
    if (address.startsWith("unix:")) {
      const path = address.slice("unix:".length).replace(/^\/\//, "");
      await removeStaleSocket(path);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(path, () => {
          server.off("error", reject);
          resolve();
        });
      });
      return address;
    }
    const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
    if (match === null)
      throw new Error(`--http takes host:port or unix:/path, got ${JSON.stringify(address)}`);
    const host = (match[1] ?? match[2]) as string;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(Number(match[3]), host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    return match[1] === undefined ? `${host}:${port}` : `[${host}]:${port}`;
  }

  async close(): Promise<void> {
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  async #serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    response.setHeader("x-content-type-options", "nosniff");
    let url: URL;
    try {
      url = new URL(request.url ?? "/", "http://localhost");
    } catch {
      return plain(response, 400, "bad request URL");
    }
    if (TOKEN_PARAMETERS.some((name) => url.searchParams.has(name))) {
      return plain(
        response,
        400,
        "send the access token in an Authorization: Bearer header, never in the URL",
      );
    }
    const method = request.method === "HEAD" ? "GET" : (request.method ?? "GET");
    const matching = this.#routes.filter((route) =>
      route.prefix ? url.pathname.startsWith(route.path) : url.pathname === route.path,
    );
    if (matching.length === 0) return plain(response, 404, "not found");
    // An exact route wins over a prefix, a longer prefix over a shorter one.
    const route = matching
      .filter((candidate) => candidate.method === method)
      .sort((a, b) => Number(a.prefix) - Number(b.prefix) || b.path.length - a.path.length)[0];
    if (route === undefined) {
      response.setHeader("allow", [...new Set(matching.map((candidate) => candidate.method))].join(", "));
      return plain(response, 405, "method not allowed");
    }
    const deployment = this.#authorize(request, route.access, response);
    if (deployment === undefined) return;
    try {
      await route.handler(request, response, { url, deployment });
    } catch (error) {
      this.#o.log.error({ err: error, path: url.pathname }, "HTTP handler failed");
      if (!response.headersSent) plain(response, 500, "internal error");
      else response.destroy();
    }
  }

  /** The deployment the caller may see; undefined once it has been refused. */
  #authorize(request: IncomingMessage, access: RouteAccess, response: ServerResponse): string | undefined {
    if (access === "public") return "";
    const header = request.headers["x-numerous-deployment"];
    const wanted = access === "operator" ? "*" : Array.isArray(header) ? header[0] : header;
    const checked = this.#o.access.check(request.headers.authorization, wanted);
    if (checked.ok) return checked.deployment;
    if (checked.reason === "unauthenticated") {
      response.setHeader("www-authenticate", 'Bearer realm="numerous-executor"');
      plain(
        response,
        401,
        request.headers.authorization
          ? "wrong access token"
          : "missing access token: send it as Authorization: Bearer <token>",
      );
    } else {
      plain(
        response,
        403,
        access === "operator" ? "this needs a token granted every deployment (*)" : checked.message,
      );
    }
    return undefined;
  }
}

function plain(response: ServerResponse, status: number, message: string): void {
  response.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  response.end(`${message}\n`);
}
