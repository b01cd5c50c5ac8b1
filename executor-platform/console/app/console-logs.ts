// The instance page's live log: the instance's stdout and stderr lines as the daemon keeps them,
// followed over /console/api/instances/:id/logs until the instance has ended. One panel, for the
// instance shown: the page re-renders itself as the instance changes, and keeps the panel (and
// its stream) as long as it shows that instance.

import { h, headers, readEvents, time } from "./console-kit.js";

interface LogMessage {
  lines: Array<{ at: number; stream: "stdout" | "stderr"; line: string }>;
}

/**
 * Lines shown at most, the oldest dropped first: the daemon keeps each log bounded, but a page
 * that follows an instance printing without end would grow without end.
 */
const MAX_SHOWN = 5000;
/** After a cut stream (a daemon restart), the log is read on from its cursor this much later. */
const RETRY_MS = 1000;

let shown: { id: string; panel: HTMLElement; abort: AbortController; restore: () => void } | undefined;

/** The log panel of instance `id`: the one on the page already, or a new one that starts following. */
export function logPanel(id: string): HTMLElement {
  if (shown?.id === id) return shown.panel;
  shown?.abort.abort();
  const lines = h("div", { class: "log", id: "logs" });
  const state = h("p", { class: "log-state", id: "log-state" }, "Reading the log…");
  const panel = h("section", {}, h("h3", {}, "Logs"), lines, state);
  const abort = new AbortController();
  // Where the reader had scrolled to (the end, to follow): a re-render moves the panel, which
  // loses its scroll position.
  let scrolled = { top: 0, atEnd: true };
  lines.addEventListener("scroll", () => {
    if (lines.isConnected) scrolled = { top: lines.scrollTop, atEnd: atEnd(lines) };
  });
  const restore = () => {
    lines.scrollTop = scrolled.atEnd ? lines.scrollHeight : scrolled.top;
  };
  shown = { id, panel, abort, restore };
  void follow(id, lines, state, abort.signal);
  return panel;
}

/** After a render: stops following once the page no longer shows the panel, else puts its scroll back. */
export function settleLogPanel(main: HTMLElement): void {
  if (shown === undefined) return;
  if (main.contains(shown.panel)) shown.restore();
  else {
    shown.abort.abort();
    shown = undefined;
  }
}

function atEnd(element: HTMLElement): boolean {
  return element.scrollHeight - element.scrollTop - element.clientHeight < 24;
}

async function follow(
  id: string,
  lines: HTMLElement,
  state: HTMLElement,
  signal: AbortSignal,
): Promise<void> {
  let cursor = "";
  let count = 0;
  let dropped = 0;
  const note = h("div", { class: "note" });
  const append = ({ lines: added }: LogMessage) => {
    const atBottom = atEnd(lines);
    const fragment = document.createDocumentFragment();
    for (const { at, stream, line } of added) {
      fragment.append(
        h(
          "div",
          { class: `line ${stream}`, "data-stream": stream, title: stream },
          h("time", {}, time(at)),
          " ",
          line,
        ),
      );
    }
    lines.append(fragment);
    count += added.length;
    for (; count - dropped > MAX_SHOWN; dropped++) {
      const first = note.isConnected ? note.nextElementSibling : lines.firstElementChild;
      first?.remove();
    }
    if (dropped > 0) {
      note.textContent = `… ${dropped} earlier line${dropped === 1 ? "" : "s"} not shown`;
      if (!note.isConnected) lines.prepend(note);
    }
    if (atBottom) lines.scrollTop = lines.scrollHeight;
  };
  while (!signal.aborted) {
    try {
      const query = cursor === "" ? "" : `?after=${encodeURIComponent(cursor)}`;
      const response = await fetch(`/console/api/instances/${encodeURIComponent(id)}/logs${query}`, {
        headers: headers(),
        signal,
      });
      if (!response.ok) {
        state.textContent =
          response.status === 404 ? "No such instance." : `The log cannot be read (${response.status}).`;
        return;
      }
      state.textContent = "Following the log…";
      let ended: { status?: string } | undefined;
      await readEvents(response, (event) => {
        if (event.event === "end") {
          ended = JSON.parse(event.data) as { status?: string };
          return;
        }
        if (event.id !== undefined) cursor = event.id;
        append(JSON.parse(event.data) as LogMessage);
      });
      if (ended !== undefined) {
        const how = ended.status === undefined ? "" : ` (${ended.status})`;
        state.textContent = count === 0 ? `Log ended${how}. No output was kept.` : `Log ended${how}.`;
        state.classList.add("ended");
        return;
      }
    } catch {
      if (signal.aborted) return;
    }
    state.textContent = "The log stream was cut; reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}
