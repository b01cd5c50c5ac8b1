/**
 * The web console's HTTP side (SPEC §6): the page and its script are served from the build, its
 * API answers a token's own deployment only, the event stream pushes progress as it happens, and
 * the stop is the gRPC one. Real daemon processes over real HTTP; the browser test is
 * console-browser.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PlatformExecutor, setExecutor } from "numerous-tasks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { slowCount, waitForStop } from "./fixtures/contract-tasks.js";
import { printsBothAroundFlag } from "./fixtures/log-tasks.js";
import { type Cluster, startCluster } from "./helpers/cluster.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";
import { withDeadline } from "./helpers/deadline.js";
import { type TestPostgres, startPostgres } from "./helpers/embedded-postgres.js";
import { until } from "./helpers/handles.js";

const TEAM_TOKEN = "team-token-console";
const OTHER_TOKEN = "other-team-token-console";

const daemons: DaemonProcess[] = [];
const executors: PlatformExecutor[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  for (const executor of executors.splice(0)) await executor.close();
  for (const daemon of daemons.splice(0)) {
    await daemon.stop();
    removeDataDir(daemon.dataDir);
  }
});

async function daemonWithHttp(
  args: readonly string[] = [],
): Promise<{ daemon: DaemonProcess; http: string }> {
  const daemon = await startDaemon({ args: ["--http", "127.0.0.1:0", ...args] });
  daemons.push(daemon);
  const http = daemon.logs.find((entry) => entry.msg === "listening")?.http;
  if (typeof http !== "string") throw new Error("the listening line names no http address");
  return { daemon, http };
}

function useDaemon(daemon: DaemonProcess, accessToken?: string, deploymentId?: string): PlatformExecutor {
  const executor = new PlatformExecutor({
    address: daemon.address,
    accessToken,
    deploymentId,
    tlsCaFile: undefined,
  });
  executors.push(executor);
  setExecutor(executor);
  return executor;
}

function bearer(token: string | undefined, deployment?: string): Record<string, string> {
  return {
    ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    ...(deployment === undefined ? {} : { "x-numerous-deployment": deployment }),
  };
}

/** Reads server-sent events from a fetch stream until `wanted` accepts one, or the deadline. */
async function eventUntil<T>(response: Response, wanted: (rows: T[]) => boolean, what: string): Promise<T[]> {
  const reader = (response.body as ReadableStream<Uint8Array>)
    .pipeThrough(new TextDecoderStream())
    .getReader();
  let buffer = "";
  const read = async (): Promise<T[]> => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the event stream ended before ${what}`);
      buffer += value;
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("data: ")) continue;
        const rows = JSON.parse(event.slice(6)) as T[];
        if (wanted(rows)) return rows;
      }
    }
  };
  try {
    return await withDeadline(read(), what);
  } finally {
    reader.cancel().catch(() => {});
  }
}

interface ServerEvent {
  event: string;
  data: string;
  id: string | undefined;
}

/** The server-sent events of a fetch stream, one at a time, until it ends. */
async function* serverEvents(response: Response): AsyncGenerator<ServerEvent, void> {
  const reader = (response.body as ReadableStream<Uint8Array>)
    .pipeThrough(new TextDecoderStream())
    .getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event: ServerEvent = { event: "message", data: "", id: undefined };
        for (const line of block.split("\n")) {
          if (line.startsWith("data: ")) event.data = line.slice(6);
          else if (line.startsWith("event: ")) event.event = line.slice(7);
          else if (line.startsWith("id: ")) event.id = line.slice(4);
        }
        if (event.data !== "") yield event;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

interface StreamedLine {
  at: number;
  stream: "stdout" | "stderr";
  line: string;
}

/** A log stream's lines and its end event, read to the stream's end. */
async function readLog(response: Response, what: string): Promise<{ lines: StreamedLine[]; end: unknown }> {
  const lines: StreamedLine[] = [];
  let end: unknown;
  const reading = (async () => {
    for await (const event of serverEvents(response)) {
      if (event.event === "end") end = JSON.parse(event.data);
      else lines.push(...(JSON.parse(event.data) as { lines: StreamedLine[] }).lines);
    }
  })();
  await withDeadline(reading, what);
  return { lines, end };
}

/** A JSON answer, read loosely: the assertions say what it holds. */
// biome-ignore lint/suspicious/noExplicitAny: test reads of JSON answers
async function getJson(url: string, init?: RequestInit): Promise<any> {
  const response = await fetch(url, init);
  return response.json();
}

interface Summary {
  id: string;
  task: string;
  status: string;
  progress: number;
}

describe("web console over HTTP", () => {
  it("serves the page and its built script, loads nothing from elsewhere, and lists, filters and pages instances", async () => {
    const { daemon, http } = await daemonWithHttp();
    useDaemon(daemon);
    const page = await fetch(`http://${http}/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('<script type="module" src="/console/app/console-app.js">');
    expect(html).not.toMatch(/https?:\/\//);
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    const script = await fetch(`http://${http}/console/app/console-app.js`);
    expect(script.headers.get("content-type")).toMatch(/^text\/javascript/);
    const code = await script.text();
    expect(code).toContain("/console/api/events");
    expect(code).not.toContain("not built");
    expect(code).toContain('from "./console-kit.js"');
    expect((await fetch(`http://${http}/console/app/console-kit.js`)).status).toBe(200);
    // Only the built scripts are served from there.
    expect((await fetch(`http://${http}/console/app/..%2F..%2Fconsole-routes.js`)).status).toBe(404);

    const instances = [slowCount(1, 1), slowCount(1, 1), slowCount(1, 1)];
    for (const instance of instances) await until(instance, (i) => i.isDone(), "its end");
    const stopped = waitForStop("x");
    await until(stopped, (i) => i.progress === 0.5, "the task to run");

    const list = async (query: string) => {
      const response = await fetch(`http://${http}/console/api/instances?${query}`);
      expect(response.status).toBe(200);
      return (await response.json()) as { instances: Summary[]; nextCursor: string };
    };
    const all = await list("");
    expect(all.instances.map((i) => i.id)).toEqual([...instances.map((i) => i.id), stopped.id]);
    const running = await list("status=running");
    expect(running.instances.map((i) => [i.id, i.task, i.progress])).toEqual([
      [stopped.id, "waitForStop", 0.5],
    ]);
    expect((await list("task=slowCount")).instances).toHaveLength(3);
    const first = await list("limit=2");
    expect(first.instances.map((i) => i.id)).toEqual(instances.slice(0, 2).map((i) => i.id));
    const second = await list(`limit=2&cursor=${first.nextCursor}`);
    expect(second.instances.map((i) => i.id)).toEqual([instances[2]?.id, stopped.id]);
    expect(second.nextCursor).toBe("");
    const bad = await fetch(`http://${http}/console/api/instances?status=nope`);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain("unknown status");

    const detail = await getJson(`http://${http}/console/api/instances/${instances[0]?.id}`);
    expect(detail).toMatchObject({ status: "completed", result: expect.stringContaining('"counted": 1') });
    const overview = await getJson(`http://${http}/console/api/overview`);
    expect(overview.counts).toEqual({ completed: 3, running: 1 });
    const lastMinutes = overview.minutes as Array<{ completed: number }>;
    expect(lastMinutes.reduce((sum, m) => sum + m.completed, 0)).toBe(3);
    const definitions = await getJson(`http://${http}/console/api/definitions`);
    expect(definitions.definitions.map((d: { name: string }) => d.name).sort()).toEqual([
      "slowCount",
      "waitForStop",
    ]);
    const cluster = await getJson(`http://${http}/console/api/cluster`);
    expect(cluster).toMatchObject({ mode: "single", daemons: [{ running: 1, self: true }] });
    expect((await getJson(`http://${http}/console/api/schedules`)).schedules).toEqual([]);

    // A stop needs the console's header: a cross-site form cannot send it.
    const forged = await fetch(`http://${http}/console/api/instances/${stopped.id}/stop`, { method: "POST" });
    expect(forged.status).toBe(403);
    const stop = await fetch(`http://${http}/console/api/instances/${stopped.id}/stop`, {
      method: "POST",
      headers: { "x-numerous-console": "1" },
    });
    expect(await stop.json()).toEqual({ found: true });
    await until(stopped, (i) => i.isDone(), "the stop");
    expect(stopped.status).toBe("cancelled");
  });

  it("streams a running instance's log as server-sent events, follows it to the instance's end, and answers bad input plainly", async () => {
    const { daemon, http } = await daemonWithHttp();
    useDaemon(daemon);
    const dir = mkdtempSync(join(tmpdir(), "nt-console-"));
    dirs.push(dir);
    const flag = join(dir, "go");
    const instance = printsBothAroundFlag("c", flag);
    await until(instance, (i) => i.progress === 0.5, "the task to run");

    const logs = `http://${http}/console/api/instances/${instance.id}/logs`;
    const response = await fetch(logs);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = serverEvents(response);
    const seen: StreamedLine[] = [];
    const cursors: number[] = [];
    let end: unknown;
    const next = async (what: string) => {
      const { value, done } = await withDeadline(events.next(), what);
      if (done) return false;
      if (value.event === "end") end = JSON.parse(value.data);
      else {
        seen.push(...(JSON.parse(value.data) as { lines: StreamedLine[] }).lines);
        cursors.push(Number(value.id));
      }
      return true;
    };
    // What it printed so far comes while it runs...
    while (seen.length < 2) await next("the lines printed before the flag");
    expect(instance.status).toBe("running");
    // ...and what it prints next, as it prints it, until it has ended.
    writeFileSync(flag, "");
    while (await next("the rest of the log and its end"));
    expect(end).toEqual({ status: "completed" });
    expect(instance.status).toBe("completed");

    const text = (stream: string) => seen.filter((l) => l.stream === stream).map((l) => l.line);
    expect(text("stdout")).toEqual(["c out 1", "c out 2", "c out 3"]);
    expect(text("stderr")).toEqual(["c err 1", "c err 2"]);
    expect(seen).toHaveLength(5);
    // Each stream's lines in order, those printed before the flag before those after it.
    const position = (line: string) => seen.findIndex((l) => l.line === line);
    expect(Math.max(position("c out 1"), position("c err 1"))).toBeLessThan(
      Math.min(position("c out 2"), position("c err 2")),
    );
    for (const line of seen) expect(line.at).toBeGreaterThan(0);
    expect([...cursors].sort((a, b) => a - b)).toEqual(cursors);

    // An ended instance's log: what is kept, then its end; resumed after a cursor; its last lines.
    const again = await readLog(await fetch(logs), "the log of the ended instance");
    expect(again).toEqual({ lines: seen, end: { status: "completed" } });
    const resumed = await readLog(await fetch(`${logs}?after=${cursors[0]}`), "the log after a cursor");
    expect(resumed.lines).toEqual(seen.slice(seen.length - resumed.lines.length));
    expect(resumed.lines.length).toBeLessThan(seen.length);
    const tail = await readLog(await fetch(`${logs}?tail=1`), "the log's last line");
    expect(tail).toEqual({ lines: seen.slice(-1), end: { status: "completed" } });

    const unknown = await fetch(`http://${http}/console/api/instances/no-such-instance/logs`);
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await unknown.json()).toEqual({ error: 'no task instance with id "no-such-instance"' });
    for (const bad of ["tail=-1", "tail=abc", "tail=1.5", "after=x"]) {
      const refused = await fetch(`${logs}?${bad}`);
      expect(refused.status, bad).toBe(400);
      expect(await refused.json(), bad).toEqual({
        error: expect.stringMatching(/^(tail|after) must be a whole number of at least 0$/),
      });
    }
  });

  it("pushes each progress change over the event stream as it happens", async () => {
    const { daemon, http } = await daemonWithHttp();
    useDaemon(daemon);
    const events = await fetch(`http://${http}/console/api/events`);
    expect(events.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const counting = slowCount(50, 100);
    const seen = new Set<number>();
    await eventUntil<Summary>(
      events,
      (rows) => {
        for (const row of rows)
          if (row.id === counting.id && row.status === "running") seen.add(row.progress);
        return seen.size >= 3;
      },
      "three progress values of the running instance",
    );
  });

  it("with tokens: a wrong token sees nothing, a token sees only its deployment, never through the URL", async () => {
    const { daemon, http } = await daemonWithHttp(["--tokens", `${TEAM_TOKEN} team;${OTHER_TOKEN} other`]);
    useDaemon(daemon, TEAM_TOKEN, "team");
    const mine = waitForStop("x");
    await until(mine, (i) => i.progress === 0.5, "the task to run");

    // The page itself holds no data, so it is served to anyone; it asks for the token.
    expect((await fetch(`http://${http}/`)).status).toBe(200);
    for (const path of [
      "instances",
      `instances/${mine.id}`,
      `instances/${mine.id}/logs`,
      "overview",
      "definitions",
      "events",
      "cluster",
    ]) {
      const none = await fetch(`http://${http}/console/api/${path}`);
      expect(none.status, path).toBe(401);
      expect(await none.text()).not.toContain(mine.id);
      const wrong = await fetch(`http://${http}/console/api/${path}`, { headers: bearer("not-a-token") });
      expect(wrong.status, path).toBe(401);
    }
    const inUrl = await fetch(`http://${http}/console/api/instances?access_token=${TEAM_TOKEN}`);
    expect(inUrl.status).toBe(400);
    // Another deployment's token sees its own (empty) deployment, not this one's instances.
    const other = await fetch(`http://${http}/console/api/instances`, {
      headers: bearer(OTHER_TOKEN, "other"),
    });
    expect(((await other.json()) as { instances: Summary[] }).instances).toEqual([]);
    const otherDetail = await fetch(`http://${http}/console/api/instances/${mine.id}`, {
      headers: bearer(OTHER_TOKEN, "other"),
    });
    expect(otherDetail.status).toBe(404);
    const otherLogs = await fetch(`http://${http}/console/api/instances/${mine.id}/logs`, {
      headers: bearer(OTHER_TOKEN, "other"),
    });
    expect(otherLogs.status).toBe(404);
    const otherStop = await fetch(`http://${http}/console/api/instances/${mine.id}/stop`, {
      method: "POST",
      headers: { ...bearer(OTHER_TOKEN, "other"), "x-numerous-console": "1" },
    });
    expect(otherStop.status).toBe(404);
    // A token for one deployment asking for another is refused.
    const crossing = await fetch(`http://${http}/console/api/instances`, {
      headers: bearer(OTHER_TOKEN, "team"),
    });
    expect(crossing.status).toBe(403);

    const team = await fetch(`http://${http}/console/api/instances`, { headers: bearer(TEAM_TOKEN, "team") });
    expect(((await team.json()) as { instances: Summary[] }).instances.map((i) => i.id)).toEqual([mine.id]);
    // The other deployment's event stream hears nothing of this one's changes.
    const quiet = new AbortController();
    const otherEvents = await fetch(`http://${http}/console/api/events`, {
      headers: bearer(OTHER_TOKEN, "other"),
      signal: quiet.signal,
    });
    const teamEvents = await fetch(`http://${http}/console/api/events`, {
      headers: bearer(TEAM_TOKEN, "team"),
    });
    const otherRows: Summary[] = [];
    const collect = (rows: Summary[]) => {
      otherRows.push(...rows);
      return false;
    };
    void eventUntil<Summary>(otherEvents, collect, "nothing").catch(() => {});
    const stop = await fetch(`http://${http}/console/api/instances/${mine.id}/stop`, {
      method: "POST",
      headers: { ...bearer(TEAM_TOKEN, "team"), "x-numerous-console": "1" },
    });
    expect(stop.status).toBe(200);
    await eventUntil<Summary>(
      teamEvents,
      (rows) => rows.some((r) => r.id === mine.id && r.status === "cancelled"),
      "the team's stream to show the stop",
    );
    expect(otherRows).toEqual([]);
    quiet.abort();
  });
});

describe("web console in a cluster", () => {
  let postgres: TestPostgres | undefined;
  let cluster: Cluster | undefined;
  beforeAll(async () => {
    postgres = await startPostgres();
  });
  afterAll(async () => {
    await cluster?.close();
    await postgres?.stop();
  });

  it("shows every daemon and its load, pushes changes made on another daemon, and stops what another runs", async () => {
    // Daemon 0 serves clients only, so daemon 1 runs everything.
    cluster = await startCluster(postgres as TestPostgres, [0, 2], ["--http", "127.0.0.1:0"]);
    const [front, back] = cluster.daemons.map((daemon) => {
      const http = daemon.logs.find((entry) => entry.msg === "listening")?.http;
      if (typeof http !== "string")
        throw new Error("a cluster daemon's listening line names no http address");
      return http;
    }) as [string, string];
    setExecutor(cluster.client(0));
    const events = await fetch(`http://${front}/console/api/events`);
    const waiting = waitForStop("x");
    await until(waiting, (i) => i.progress === 0.5, "the task to run on the other daemon");

    const view = await getJson(`http://${front}/console/api/cluster`);
    expect(view.mode).toBe("cluster");
    expect(view.daemons).toHaveLength(2);
    expect(view.daemons.filter((d: { self: boolean }) => d.self)).toHaveLength(1);
    expect(view.daemons.map((d: { running: number }) => d.running).sort()).toEqual([0, 1]);
    const fromBack = await getJson(`http://${back}/console/api/cluster`);
    expect(fromBack.daemons.find((d: { self: boolean }) => d.self).running).toBe(1);

    // The front daemon's stream hears the progress the back daemon's workload reported.
    await eventUntil<Summary>(
      events,
      (rows) => rows.some((r) => r.id === waiting.id && r.progress === 0.5),
      "the other daemon's change on this daemon's stream",
    );
    const stop = await fetch(`http://${front}/console/api/instances/${waiting.id}/stop`, {
      method: "POST",
      headers: { "x-numerous-console": "1" },
    });
    expect(stop.status).toBe(200);
    await until(waiting, (i) => i.isDone(), "the stop");
    expect(waiting.status).toBe("cancelled");
    // Counted and logged by the daemon it ran on, read on the other.
    expect((await getJson(`http://${front}/console/api/overview`)).counts).toEqual({ cancelled: 1 });
    const log = await readLog(
      await fetch(`http://${front}/console/api/instances/${waiting.id}/logs`),
      "the log of an instance that ran on the other daemon",
    );
    expect(log.end).toEqual({ status: "cancelled" });
  }, 60_000);
});
