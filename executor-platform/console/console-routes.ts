import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { IncomingMessage, ServerResponse } from "node:http";
import { decodeValue } from "../../sdk/codec.js";
import { STREAM_NAMES } from "../../sdk/log-lines.js";
import { type TaskStatus, isTaskStatus } from "../../sdk/task-status.js";
import type { InstanceTable } from "../daemon/instance-table.js";
import { type LogSink, type LogStreamEnd, type LogStreamRequest, drained } from "../daemon/log-stream.js";
import type { RunQueue } from "../daemon/run-queue.js";
import type { Scheduler } from "../daemon/scheduler.js";
import type { WatchHub } from "../daemon/watch-hub.js";
import type { HttpServer, RouteContext } from "../http/http-server.js";
import { isClusterStore } from "../store/cluster-store.js";
import type { Store, StoredInstance } from "../store/store.js";
import { CONSOLE_CSS, CONSOLE_PAGE } from "./console-page.js";

/** What the console reads and does, all of it the daemon's own parts. */
export interface ConsoleOptions {
  readonly store: Store;
  readonly table: InstanceTable;
  readonly queue: RunQueue;
  readonly hub: WatchHub;
  readonly scheduler: Scheduler;
  /** The same stop the gRPC StopInstance calls; false when the deployment has no such instance. */
  readonly stop: (id: string, deployment: string) => Promise<boolean>;
  /** The reading of an instance's log that the gRPC StreamLogs serves too. */
  readonly streamLogs: (
    request: LogStreamRequest,
    deployment: string,
    sink: LogSink,
  ) => Promise<LogStreamEnd>;
  /** This daemon's name in the cluster view (its lease owner in a cluster). */
  readonly owner: string;
  readonly concurrency: number;
}

const DEFAULT_PAGE = 50;
const MAX_PAGE = 500;
/** The throughput view's span. */
const THROUGHPUT_MINUTES = 15;
/** An event stream whose browser takes less than it is sent is ended; the page reconnects and reloads. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
/** Keeps idle event streams open through proxies that cut silent connections. */
const KEEPALIVE_MS = 15_000;
/**
 * A POST must carry this header: a cross-site form or a plain fetch cannot send it without a
 * CORS preflight, which this server never grants, so a page elsewhere cannot stop instances on
 * a loopback daemon that has no tokens.
 */
const CONSOLE_HEADER = "x-numerous-console";

/**
 * The web console (SPEC §6): `GET /` is the page, `/console/app/*.js` its scripts, both public (they
 * hold no data); everything under `/console/api/` answers JSON (and one event stream) with the
 * gRPC service's access rules, for the deployment of the caller's token.
 */
export function addConsoleRoutes(server: HttpServer, o: ConsoleOptions): void {
  const scripts = loadScripts();
  const headers = {
    "cache-control": "no-store",
    "content-security-policy":
      "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "referrer-policy": "no-referrer",
  };
  server.route("GET", "/", { access: "public" }, (_request, response) => {
    response.writeHead(200, { ...headers, "content-type": "text/html; charset=utf-8" });
    response.end(CONSOLE_PAGE);
  });
  server.route("GET", "/console/app.css", { access: "public" }, (_request, response) => {
    response.writeHead(200, { ...headers, "content-type": "text/css; charset=utf-8" });
    response.end(CONSOLE_CSS);
  });
  server.route("GET", "/console/app/*", { access: "public" }, (_request, response, { url }) => {
    const script = scripts.get(url.pathname.slice("/console/app/".length));
    if (script === undefined) return json(response, 404, { error: "not found" });
    response.writeHead(200, { ...headers, "content-type": "text/javascript; charset=utf-8" });
    response.end(script);
  });
  // One daemon counts its store's rows cheaply (SQLite keeps the counts); daemons sharing a
  // PostgreSQL store count its rows, so each reads them at most once a second per deployment.
  const readOverview = isClusterStore(o.store)
    ? atMostEverySecond((deployment: string) => overview(o, deployment))
    : (deployment: string) => overview(o, deployment);
  server.route("GET", "/console/api/*", { access: "deployment" }, (request, response, context) =>
    get(o, readOverview, request, response, context),
  );
  server.route("POST", "/console/api/*", { access: "deployment" }, async (request, response, context) => {
    if (request.headers[CONSOLE_HEADER] !== "1") {
      return json(response, 403, { error: `send the ${CONSOLE_HEADER}: 1 header` });
    }
    const match = /^\/console\/api\/instances\/([^/]+)\/stop$/.exec(context.url.pathname);
    if (match === null) return json(response, 404, { error: "not found" });
    const found = await o.stop(decodeURIComponent(match[1] as string), context.deployment);
    json(response, found ? 200 : 404, { found });
  });
}

async function get(
  o: ConsoleOptions,
  readOverview: (deployment: string) => Promise<Overview>,
  request: IncomingMessage,
  response: ServerResponse,
  { url, deployment }: RouteContext,
): Promise<void> {
  const path = url.pathname.slice("/console/api/".length);
  if (path === "instances") {
    try {
      return json(response, 200, await listInstances(o, url, deployment));
    } catch (error) {
      if (error instanceof ConsoleInputError) return json(response, 400, { error: error.message });
      throw error;
    }
  }
  const logsOf = /^instances\/([^/]+)\/logs$/.exec(path);
  if (logsOf !== null) return logs(o, response, decodeURIComponent(logsOf[1] as string), url, deployment);
  if (path.startsWith("instances/")) {
    const id = decodeURIComponent(path.slice("instances/".length));
    const row = await o.table.latest(id);
    if (row === undefined || row.deploymentId !== deployment)
      return json(response, 404, { error: "not found" });
    return json(response, 200, detail(row));
  }
  if (path === "definitions") {
    const definitions = await o.store.listDefinitions(deployment);
    return json(response, 200, {
      definitions: definitions.map(({ id, name, module }) => ({ id, name, module })),
    });
  }
  if (path === "schedules") return json(response, 200, { schedules: await o.scheduler.list(deployment) });
  if (path === "cluster") return json(response, 200, await cluster(o));
  if (path === "overview") return json(response, 200, await readOverview(deployment));
  if (path === "events") return events(o, request, response, deployment);
  json(response, 404, { error: "not found" });
}

async function listInstances(o: ConsoleOptions, url: URL, deployment: string) {
  const query = url.searchParams;
  const limit = Math.min(MAX_PAGE, Math.max(1, Number(query.get("limit")) || DEFAULT_PAGE));
  const statuses = query.getAll("status").filter((s) => s !== "");
  const bad = statuses.find((s) => !isTaskStatus(s));
  if (bad !== undefined) throw new ConsoleInputError(`unknown status ${JSON.stringify(bad)}`);
  const cursor = query.get("cursor");
  const after = cursor === null || cursor === "" ? undefined : Number(cursor);
  if (after !== undefined && !Number.isSafeInteger(after)) throw new ConsoleInputError("bad cursor");
  const rows = await o.store.list({
    deploymentId: deployment,
    task: query.get("task") || undefined,
    statuses: statuses.length > 0 ? (statuses as TaskStatus[]) : undefined,
    afterPosition: after,
    limit: limit + 1,
  });
  const page = rows.slice(0, limit).map((row) => o.table.known(row.id) ?? row);
  return {
    instances: page.map(summary),
    nextCursor: rows.length > limit ? String((page.at(-1) as StoredInstance).position) : "",
  };
}

/** What a row of the list shows; also what the event stream sends. */
function summary(row: StoredInstance) {
  return {
    id: row.id,
    task: row.taskName,
    status: row.status,
    progress: row.progress,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    attempt: row.attempt,
    maxAttempts: row.maxAttempts,
  };
}

function detail(row: StoredInstance) {
  return {
    ...summary(row),
    owner: row.owner,
    output: shown(row.output),
    result: shown(row.result),
    error: row.error,
    attempts: row.attempts ?? [],
    priority: row.priority,
    concurrencyKey: row.concurrencyKey,
  };
}

/** A stored value as readable JSON text (dates as ISO strings). */
function shown(encoded: string | undefined): string | undefined {
  if (encoded === undefined) return undefined;
  try {
    return JSON.stringify(decodeValue(encoded), null, 2) ?? "undefined";
  } catch {
    return encoded;
  }
}

async function cluster(o: ConsoleOptions) {
  if (isClusterStore(o.store)) {
    const daemons = await o.store.daemons();
    return {
      mode: "cluster",
      daemons: daemons.map((d) => ({ ...d, self: d.owner === o.owner })),
    };
  }
  return {
    mode: "single",
    daemons: [
      { owner: o.owner, running: o.queue.running, concurrency: o.concurrency, leaseUntil: null, self: true },
    ],
  };
}

/** The overview's figures: counts by status, and what finished in each of the last minutes. */
interface Overview {
  readonly counts: Partial<Record<TaskStatus, number>>;
  readonly minutes: ReadonlyArray<{ minute: number; completed: number; failed: number; cancelled: number }>;
  readonly now: number;
}

async function overview(o: ConsoleOptions, deployment: string): Promise<Overview> {
  const now = Date.now();
  const since = Math.floor(now / 60_000) * 60_000 - (THROUGHPUT_MINUTES - 1) * 60_000;
  const [counts, finished] = await Promise.all([
    o.store.statusCounts(deployment),
    o.store.finishedPerMinute(deployment, since),
  ]);
  const minutes = Array.from({ length: THROUGHPUT_MINUTES }, (_, i) => ({
    minute: since + i * 60_000,
    completed: 0,
    failed: 0,
    cancelled: 0,
  }));
  for (const { minute, status, count } of finished) {
    const bucket = minutes[Math.round((minute - since) / 60_000)];
    if (bucket !== undefined && (status === "completed" || status === "failed" || status === "cancelled"))
      bucket[status] += count;
  }
  return { counts, minutes, now };
}

/** Deployments whose figures are remembered at once, at most; older ones are let go first. */
const MAX_REMEMBERED_DEPLOYMENTS = 100;

/**
 * `read`, called at most once a second per deployment: callers within the second (and while a
 * read is under way) share its answer. A failed read is not kept.
 */
function atMostEverySecond<T>(read: (deployment: string) => Promise<T>): (deployment: string) => Promise<T> {
  const reads = new Map<string, { readonly at: number; readonly value: Promise<T> }>();
  return (deployment) => {
    const now = Date.now();
    const kept = reads.get(deployment);
    if (kept !== undefined && now - kept.at < 1000) return kept.value;
    reads.delete(deployment);
    if (reads.size >= MAX_REMEMBERED_DEPLOYMENTS) reads.delete(reads.keys().next().value as string);
    const value = read(deployment);
    reads.set(deployment, { at: now, value });
    value.catch(() => {
      if (reads.get(deployment)?.value === value) reads.delete(deployment);
    });
    return value;
  };
}

/**
 * Server-sent events of the deployment's instance changes, as the watch hub broadcasts them:
 * one `data:` line of summaries per broadcast. Nothing is replayed: the page reads a list first,
 * then applies what changes. A browser that does not keep up is cut, not buffered for.
 */
function events(o: ConsoleOptions, request: IncomingMessage, response: ServerResponse, deployment: string) {
  response.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    "x-accel-buffering": "no",
  });
  response.flushHeaders();
  response.write(": open\n\n");
  const unsubscribe = o.hub.listen(deployment, (rows) => {
    if (response.writableLength > MAX_BUFFERED_BYTES) {
      response.end();
      return;
    }
    response.write(`data: ${JSON.stringify(rows.map(summary))}\n\n`);
  });
  const keepalive = setInterval(() => response.write(": ping\n\n"), KEEPALIVE_MS);
  keepalive.unref();
  const close = () => {
    clearInterval(keepalive);
    unsubscribe();
  };
  request.on("close", close);
  response.on("close", close);
}

/**
 * Server-sent events of an instance's log, followed as `tasks logs --follow` follows it: what is
 * kept (its last `tail` lines, or what comes after the cursor `after`), then each new line until
 * the instance has ended and its last output is written, then one `end` event. Each message is a
 * `data:` line of `{ lines: [{ at, stream, line }] }` with its cursor as the event's id, so a
 * reader cut off (a daemon restart) resumes with `after`. A slow reader is waited for, not cut.
 */
async function logs(
  o: ConsoleOptions,
  response: ServerResponse,
  id: string,
  url: URL,
  deployment: string,
): Promise<void> {
  const tail = wholeNumber(url.searchParams.get("tail"), "tail");
  const after = wholeNumber(url.searchParams.get("after"), "after");
  if (typeof tail === "string") return json(response, 400, { error: tail });
  if (typeof after === "string") return json(response, 400, { error: after });
  const abort = new AbortController();
  const gone = () => abort.abort();
  response.on("close", gone);
  // Opened with the first message, so an unknown id is still answered 404.
  const open = () => {
    if (response.headersSent) return;
    response.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    });
    response.write(": open\n\n");
  };
  const keepalive = setInterval(() => {
    open();
    response.write(": ping\n\n");
  }, KEEPALIVE_MS);
  keepalive.unref();
  try {
    const end = await o.streamLogs({ id, follow: true, tail, afterCursor: after ?? 0 }, deployment, {
      signal: abort.signal,
      send: async (lines, cursor) => {
        open();
        const shown = lines.map(({ atMs, stream, line }) => ({
          at: atMs,
          stream: STREAM_NAMES[stream],
          line,
        }));
        if (!response.write(`id: ${cursor}\ndata: ${JSON.stringify({ lines: shown })}\n\n`)) {
          await drained(response, abort.signal);
        }
      },
    });
    if (end === "not-found")
      return json(response, 404, { error: `no task instance with id ${JSON.stringify(id)}` });
    if (end === "gone") return;
    open();
    // The end event only for a complete log: one cut short by this daemon's shutdown ends
    // without it, and the page resumes after its cursor.
    if (end === "ended") {
      const row = await o.table.latest(id);
      response.write(`event: end\ndata: ${JSON.stringify({ status: row?.status })}\n\n`);
    }
    response.end();
  } finally {
    clearInterval(keepalive);
    response.off("close", gone);
  }
}

/** A query parameter that must be a whole number of at least 0: the number, undefined when absent, or what is wrong. */
function wholeNumber(value: string | null, name: string): number | undefined | string {
  if (value === null || value === "") return undefined;
  const n = Number(value);
  return /^\d+$/.test(value) && Number.isSafeInteger(n) ? n : `${name} must be a whole number of at least 0`;
}

class ConsoleInputError extends Error {}

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
  });
  response.end(JSON.stringify(body));
}

/**
 * The browser scripts (ES modules), built by `npm run build` next to this file's built copy; from
 * source (tsx), the ones in dist/. Read once: the console serves only these names.
 */
function loadScripts(): Map<string, string> {
  const candidates = [
    new URL("./app/", import.meta.url),
    new URL("../../dist/executor-platform/console/app/", import.meta.url),
  ];
  for (const candidate of candidates) {
    const dir = fileURLToPath(candidate);
    if (!existsSync(join(dir, "console-app.js"))) continue;
    const scripts = new Map<string, string>();
    for (const name of readdirSync(dir)) {
      if (/^[a-z-]+\.js$/.test(name)) scripts.set(name, readFileSync(join(dir, name), "utf8"));
    }
    return scripts;
  }
  return new Map([
    ["console-app.js", 'document.body.textContent = "The console script is not built: run npm run build.";'],
  ]);
}
