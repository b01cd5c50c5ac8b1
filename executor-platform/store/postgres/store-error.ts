/**
 * What the PostgreSQL store's errors say: the store named by a URL without its password, a
 * message even for driver errors that come without one, and whether the server was unreachable.
 */
import { StoreUnavailableError } from "../store-errors.js";

/** `postgres://user@host:port/db`: what error messages name; never the password. */
export function describeUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error("the task store URL is not a URL; expected postgres://user:password@host:port/database");
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new Error(
      `the task store URL must start with postgres:// or postgresql:// (got ${parsed.protocol}//${parsed.host}...)`,
    );
  }
  const user = parsed.username === "" ? "" : `${decodeURIComponent(parsed.username)}@`;
  const host = parsed.host === "" ? "localhost" : parsed.host;
  return `${parsed.protocol}//${user}${host}${parsed.pathname === "/" ? "" : parsed.pathname}`;
}

/**
 * `error` from the store `label`, as callers get it: the store named, PostgreSQL's code kept, and
 * a {@link StoreUnavailableError} when the server could not be reached.
 */
export function storeError(label: string, error: unknown): Error {
  const message = `task store ${label}: ${errorMessage(error)}`;
  const wrapped = isConnectionFailure(error)
    ? new StoreUnavailableError(message, { cause: error })
    : new Error(message, { cause: error });
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") Object.assign(wrapped, { code });
  return wrapped;
}

/** SQLSTATEs that mean the server cannot serve now: connection exceptions, shutting down, starting up, full. */
const UNAVAILABLE_STATES = /^(08|57P0[123]|53300|53400)/;
/** What node and pg say when a connection could not be made or was lost. */
const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ENOTFOUND",
]);
const UNAVAILABLE_MESSAGES =
  /Connection terminated|connection timeout|timeout exceeded when trying to connect|not queryable|Client was closed|the database system is (starting up|shutting down)/i;

/** Whether a failure says the server could not be reached (worth retrying), not that the request was wrong. */
function isConnectionFailure(error: unknown): boolean {
  if (error instanceof AggregateError) return error.errors.some(isConnectionFailure);
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && (UNAVAILABLE_STATES.test(code) || UNAVAILABLE_CODES.has(code))) return true;
  return UNAVAILABLE_MESSAGES.test(error.message);
}

/** A message that says something even for errors without one (a refused connection to several addresses). */
export function errorMessage(error: unknown): string {
  if (error instanceof AggregateError && error.message === "") {
    return error.errors.map(errorMessage).join("; ") || "connection failed";
  }
  if (error instanceof Error) {
    if (error.message !== "") return error.message;
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" ? code : error.name;
  }
  return String(error);
}
