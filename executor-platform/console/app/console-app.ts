// The web console's script: plain DOM, no framework (nothing to load or keep updated). Routes
// are the URL's hash; data comes from /console/api with the token in an Authorization header,
// live changes from one fetch-streamed event stream (EventSource cannot send that header).

import {
  type Detail,
  type Summary,
  STATUSES,
  TOKEN_KEY,
  DEPLOYMENT_KEY,
  Unauthorized,
  api,
  bar,
  h,
  headers,
  readEvents,
  statusBadge,
  time,
  token,
} from "./console-kit.js";
import { logPanel, settleLogPanel } from "./console-logs.js";

const main = document.getElementById("main") as HTMLElement;
const live = document.getElementById("live") as HTMLElement;
const signout = document.getElementById("signout") as HTMLButtonElement;

/** What the shown page wants to hear of each change pushed by the daemon. */
let onChanges: ((rows: Summary[]) => void) | undefined;
let streamAbort: AbortController | undefined;
/** Counts renders: a read that a later render overtook is dropped rather than shown over it. */
let generation = 0;

class Superseded extends Error {}

/** {@link api} for a page's reads; throws {@link Superseded} when another render began meanwhile. */
async function read<T>(path: string): Promise<T> {
  const mine = generation;
  const data = await api<T>(path);
  if (mine !== generation) throw new Superseded();
  return data;
}

/** Reads the daemon's event stream until it ends or the page goes away; reconnects after a pause. */
async function stream(): Promise<void> {
  streamAbort?.abort();
  const abort = new AbortController();
  streamAbort = abort;
  while (!abort.signal.aborted) {
    try {
      const response = await fetch("/console/api/events", { headers: headers(), signal: abort.signal });
      if (!response.ok) throw new Error(String(response.status));
      live.textContent = "live";
      live.classList.add("on");
      await readEvents(response, ({ data }) => onChanges?.(JSON.parse(data) as Summary[]));
    } catch {
      if (abort.signal.aborted) return;
    }
    live.textContent = "offline";
    live.classList.remove("on");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    // What changed while it was cut is read again.
    if (!abort.signal.aborted) void render();
  }
}

function askToken(message: string): void {
  streamAbort?.abort();
  onChanges = undefined;
  const input = h("input", {
    type: "password",
    name: "token",
    autocomplete: "off",
    required: "",
  }) as HTMLInputElement;
  const deployment = h("input", {
    name: "deployment",
    placeholder: "default",
    value: sessionStorage.getItem(DEPLOYMENT_KEY) ?? "",
  }) as HTMLInputElement;
  const form = h(
    "form",
    { class: "token" },
    h("p", {}, message),
    h("label", {}, "Access token ", input),
    h("label", {}, "Deployment ", deployment),
    h("button", { type: "submit" }, "Open"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value);
    sessionStorage.setItem(DEPLOYMENT_KEY, deployment.value.trim());
    void start();
  });
  main.replaceChildren(form);
  input.focus();
}

async function overviewPage(): Promise<void> {
  const data = await read<{
    counts: Record<string, number>;
    minutes: Array<{ minute: number; completed: number; failed: number; cancelled: number }>;
  }>("overview");
  const max = Math.max(1, ...data.minutes.map((m) => m.completed + m.failed + m.cancelled));
  const chart = h("div", { class: "chart", title: "instances finished per minute" });
  for (const m of data.minutes) {
    const column = h("div", {
      title: `${time(m.minute)}: ${m.completed} completed, ${m.failed} failed, ${m.cancelled} cancelled`,
    });
    for (const kind of ["completed", "failed", "cancelled"] as const) {
      const part = h("span", { class: kind });
      part.style.height = `${(m[kind] / max) * 120}px`;
      column.append(part);
    }
    chart.append(column);
  }
  const total = data.minutes.reduce((sum, m) => sum + m.completed + m.failed + m.cancelled, 0);
  main.replaceChildren(
    h("h2", {}, "Overview"),
    h(
      "div",
      { class: "cards" },
      ...STATUSES.map((s) =>
        h("div", { class: "card", "data-count": s }, h("b", {}, String(data.counts[s] ?? 0)), statusBadge(s)),
      ),
    ),
    h("h3", {}, `Finished per minute, last ${data.minutes.length} minutes (${total} in all)`),
    chart,
  );
  // Counts follow the pushed changes, read again at most once a second.
  let due = false;
  onChanges = () => {
    if (due) return;
    due = true;
    setTimeout(() => void render(), 1000);
  };
}

async function instancesPage(params: URLSearchParams): Promise<void> {
  const task = params.get("task") ?? "";
  const wanted = params.get("status") ?? "";
  const cursor = params.get("cursor") ?? "";
  const query = new URLSearchParams({ limit: "50" });
  if (task) query.set("task", task);
  if (wanted) query.set("status", wanted);
  if (cursor) query.set("cursor", cursor);
  const data = await read<{ instances: Summary[]; nextCursor: string }>(`instances?${query}`);
  const taskInput = h("input", { name: "task", placeholder: "task", value: task }) as HTMLInputElement;
  const statusSelect = h(
    "select",
    { name: "status" },
    h("option", { value: "" }, "any status"),
    ...STATUSES.map((s) => h("option", s === wanted ? { value: s, selected: "" } : { value: s }, s)),
  ) as HTMLSelectElement;
  const filters = h(
    "form",
    { class: "filters" },
    taskInput,
    statusSelect,
    h("button", { type: "submit" }, "Filter"),
  );
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (taskInput.value) next.set("task", taskInput.value);
    if (statusSelect.value) next.set("status", statusSelect.value);
    location.hash = `#/instances?${next}`;
  });
  const rows = new Map<string, HTMLElement>();
  const body = h("tbody");
  const row = (instance: Summary) => {
    const tr = h(
      "tr",
      { "data-id": instance.id },
      h("td", {}, h("a", { href: `#/instance/${encodeURIComponent(instance.id)}` }, instance.id)),
      h("td", {}, instance.task),
      h("td", {}, statusBadge(instance.status)),
      h("td", {}, bar(instance.progress), ` ${Math.round(instance.progress * 100)}%`),
      h("td", {}, instance.maxAttempts > 1 ? `${instance.attempt}/${instance.maxAttempts}` : ""),
      h("td", {}, time(instance.createdAt)),
      h("td", {}, time(instance.finishedAt)),
    );
    rows.get(instance.id)?.replaceWith(tr);
    rows.set(instance.id, tr);
    return tr;
  };
  for (const instance of data.instances) body.append(row(instance));
  const more = data.nextCursor
    ? h(
        "a",
        {
          href: `#/instances?${new URLSearchParams({ ...(task && { task }), ...(wanted && { status: wanted }), cursor: data.nextCursor })}`,
        },
        "Next page →",
      )
    : h("span", {}, "End of list");
  main.replaceChildren(
    h("h2", {}, "Instances"),
    filters,
    h(
      "table",
      {},
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...["id", "task", "status", "progress", "attempt", "created", "finished"].map((c) =>
            h("th", {}, c),
          ),
        ),
      ),
      body,
    ),
    h("p", {}, cursor ? h("a", { href: "#/instances" }, "← First page") : "", " ", more),
  );
  onChanges = (changes) => {
    for (const instance of changes) {
      if (rows.has(instance.id)) row(instance);
      // A new instance that passes the filters shows at the end of the last page.
      else if (
        !data.nextCursor &&
        (!task || task === instance.task) &&
        (!wanted || wanted === instance.status)
      )
        body.append(row(instance));
    }
  };
}

async function instancePage(id: string): Promise<void> {
  const instance = await read<Detail>(`instances/${encodeURIComponent(id)}`);
  const stop = h("button", { type: "button", id: "stop" }, "Stop") as HTMLButtonElement;
  const ended = ["completed", "failed", "cancelled"].includes(instance.status);
  stop.disabled = ended;
  stop.addEventListener("click", async () => {
    stop.disabled = true;
    await api(`instances/${encodeURIComponent(id)}/stop`, { method: "POST" });
  });
  const progress = h("td", {}, bar(instance.progress), ` ${Math.round(instance.progress * 100)}%`);
  const section = (title: string, text: string | undefined) =>
    text === undefined ? [] : [h("h3", {}, title), h("pre", { class: title.toLowerCase() }, text)];
  main.replaceChildren(
    h("h2", {}, `Instance ${instance.id}`),
    h(
      "table",
      {},
      h("tr", {}, h("th", {}, "task"), h("td", {}, instance.task)),
      h("tr", {}, h("th", {}, "status"), h("td", { id: "status" }, statusBadge(instance.status))),
      h("tr", {}, h("th", {}, "progress"), progress),
      h("tr", {}, h("th", {}, "created"), h("td", {}, time(instance.createdAt))),
      h("tr", {}, h("th", {}, "started"), h("td", {}, time(instance.startedAt))),
      h("tr", {}, h("th", {}, "finished"), h("td", {}, time(instance.finishedAt))),
      h("tr", {}, h("th", {}, "daemon"), h("td", {}, instance.owner || "—")),
    ),
    h("p", {}, stop),
    ...section("Output", instance.output),
    ...section("Result", instance.result),
    ...(instance.error
      ? [
          h("h3", {}, "Error"),
          h("pre", { class: "error" }, `${instance.error.name}: ${instance.error.message}`),
        ]
      : []),
    ...(instance.attempts.length > 0
      ? [
          h("h3", {}, "Attempts"),
          h(
            "table",
            {},
            ...instance.attempts.map((a) =>
              h(
                "tr",
                {},
                h("td", {}, String(a.attempt)),
                h("td", {}, time(a.startedAt)),
                h("td", {}, time(a.finishedAt)),
                h("td", {}, a.error?.message ?? ""),
              ),
            ),
          ),
        ]
      : []),
    logPanel(instance.id),
  );
  // The bar follows each pushed change; the rest (output) is read again at most twice a second,
  // and at once when the status changes.
  let due = false;
  const listener = (changes: Summary[]) => {
    let mine: Summary | undefined;
    for (const change of changes) if (change.id === id) mine = change;
    if (mine === undefined) return;
    if (mine.status !== instance.status) return void render();
    progress.replaceChildren(bar(mine.progress), ` ${Math.round(mine.progress * 100)}%`);
    if (due) return;
    due = true;
    setTimeout(() => {
      if (onChanges === listener) void render();
    }, 500);
  };
  onChanges = listener;
}

async function tablePage(title: string, columns: string[], rows: Array<Array<string | Node>>): Promise<void> {
  main.replaceChildren(
    h("h2", {}, title),
    rows.length === 0
      ? h("p", {}, "None.")
      : h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", {}, c)))),
          h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((c) => h("td", {}, c))))),
        ),
  );
}

async function render(): Promise<void> {
  generation++;
  onChanges = undefined;
  const [path = "/", search = ""] = location.hash.slice(1).split("?");
  try {
    if (path === "/instances") await instancesPage(new URLSearchParams(search));
    else if (path.startsWith("/instance/"))
      await instancePage(decodeURIComponent(path.slice("/instance/".length)));
    else if (path === "/definitions") {
      const { definitions } = await read<{
        definitions: Array<{ id: string; name: string; module: string }>;
      }>("definitions");
      await tablePage(
        "Definitions",
        ["name", "id", "module"],
        definitions.map((d) => [
          h("a", { href: `#/instances?task=${encodeURIComponent(d.name)}` }, d.name),
          d.id,
          d.module,
        ]),
      );
    } else if (path === "/schedules") {
      const { schedules } = await read<{ schedules: Array<Record<string, unknown>> }>("schedules");
      await tablePage(
        "Schedules",
        ["name", "task", "timing", "paused", "next fire", "last instance"],
        schedules.map((s) => [
          String(s.name),
          String(s.taskName),
          s.cron ? `${s.cron}${s.timezone ? ` (${s.timezone})` : ""}` : `every ${Number(s.everyMs) / 1000} s`,
          s.paused ? "paused" : "",
          time(Number(s.nextFireAtMs) || undefined),
          s.lastInstanceId
            ? h(
                "a",
                { href: `#/instance/${encodeURIComponent(String(s.lastInstanceId))}` },
                String(s.lastInstanceId),
              )
            : "",
        ]),
      );
    } else if (path === "/cluster") {
      const { mode, daemons } = await read<{
        mode: string;
        daemons: Array<{
          owner: string;
          running: number;
          concurrency?: number;
          leaseUntil: number | null;
          self: boolean;
        }>;
      }>("cluster");
      await tablePage(
        mode === "cluster" ? "Cluster (daemons sharing the PostgreSQL store)" : "Cluster (a lone daemon)",
        ["daemon", "running", "lease until", ""],
        daemons.map((d) => [
          d.owner,
          d.concurrency === undefined ? String(d.running) : `${d.running} of ${d.concurrency}`,
          time(d.leaseUntil ?? undefined),
          d.self ? "this daemon" : "",
        ]),
      );
    } else await overviewPage();
    signout.hidden = token() === null;
  } catch (error) {
    if (error instanceof Superseded) return;
    if (error instanceof Unauthorized) {
      askToken(
        token() === null
          ? "This daemon needs an access token."
          : `The token was refused (${error.message.trim()}).`,
      );
      sessionStorage.removeItem(TOKEN_KEY);
    } else main.replaceChildren(h("p", { class: "error" }, String(error)));
  } finally {
    settleLogPanel(main);
  }
}

async function start(): Promise<void> {
  await render();
  // Only once the token let the page in: a refused one leaves the form up.
  if (!main.querySelector("form.token")) void stream();
}

signout.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  askToken("Token forgotten.");
});
window.addEventListener("hashchange", () => void render());
void start();
