// Shared by the console's pages: the types the API answers, its fetch with the token, and the
// few DOM helpers the pages build with.

export interface Summary {
  id: string;
  task: string;
  status: string;
  progress: number;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  attempt: number;
  maxAttempts: number;
}

export interface Detail extends Summary {
  owner: string;
  output?: string;
  result?: string;
  error?: { name: string; message: string; stack?: string; code?: string };
  attempts: Array<{ attempt: number; startedAt: number; finishedAt?: number; error?: { message: string } }>;
}

export const TOKEN_KEY = "numerous-console-token";
export const DEPLOYMENT_KEY = "numerous-console-deployment";
export const STATUSES = ["pending", "running", "completed", "failed", "cancelled"];

export class Unauthorized extends Error {}

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** The token and deployment travel in headers only, never in a URL (they would land in logs). */
export function headers(extra: Record<string, string> = {}): Record<string, string> {
  const t = token();
  const deployment = sessionStorage.getItem(DEPLOYMENT_KEY);
  return {
    ...extra,
    ...(t === null ? {} : { authorization: `Bearer ${t}` }),
    ...(deployment ? { "x-numerous-deployment": deployment } : {}),
  };
}

export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(`/console/api/${path}`, {
    ...init,
    headers: headers(init.method === "POST" ? { "x-numerous-console": "1" } : {}),
  });
  if (response.status === 401 || response.status === 403) throw new Unauthorized(await response.text());
  if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

/** A server-sent event: its type ("message" unless named), data and id. */
export interface ServerEvent {
  event: string;
  data: string;
  id: string | undefined;
}

/**
 * Reads server-sent events from a fetch response (EventSource cannot send the token's header),
 * calling `onEvent` for each until the stream ends; comments (keepalives) are skipped.
 */
export async function readEvents(response: Response, onEvent: (event: ServerEvent) => void): Promise<void> {
  if (response.body === null) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event: ServerEvent = { event: "message", data: "", id: undefined };
      let data: string[] | undefined;
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        if (colon === 0) continue;
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + (line[colon + 1] === " " ? 2 : 1));
        if (field === "data") (data ??= []).push(text);
        else if (field === "event") event.event = text;
        else if (field === "id") event.id = text;
      }
      if (data === undefined) continue;
      event.data = data.join("\n");
      onEvent(event);
    }
  }
}

/** Builds an element: h("td", { class: "num" }, "3"). */
export function h(
  tag: string,
  attributes: Record<string, string> = {},
  ...children: Array<Node | string>
): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

export function time(ms: number | undefined): string {
  return ms === undefined || ms === null ? "" : new Date(ms).toLocaleTimeString();
}

export function bar(progress: number): HTMLElement {
  const fill = h("span");
  const percent = Math.max(0, Math.min(100, progress * 100));
  fill.style.width = `${percent}%`;
  return h("span", { class: "bar", role: "progressbar", "aria-valuenow": String(Math.round(percent)) }, fill);
}

export function statusBadge(value: string): HTMLElement {
  return h("span", { class: `status ${value}`, "data-status": value }, value);
}
