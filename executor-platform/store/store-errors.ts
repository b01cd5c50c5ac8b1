/**
 * The store cannot be reached right now: the connection was refused or lost, or the server is
 * restarting. Nothing was decided, so the same request may be made again; the daemon answers
 * `UNAVAILABLE` for it, never `INTERNAL`.
 */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

export function isStoreUnavailable(error: unknown): error is StoreUnavailableError {
  return error instanceof StoreUnavailableError;
}
