/**
 * What one observer (a watch stream, a handle's executor, the auditor) saw of each instance,
 * checked as it arrives: an instance that reached a final state must never show another
 * revision, nor the same revision with other content.
 */
import { createHash } from "node:crypto";

/** The parts of a snapshot the checker compares. */
export interface Seen {
  readonly revision: number;
  readonly status: string;
  readonly result: string | undefined;
  readonly errorName: string | undefined;
  readonly errorMessage: string | undefined;
}

/** A snapshot the SDK made on its own side: the daemon never said so. */
export const CLIENT_MADE_REVISION = Number.MAX_SAFE_INTEGER;

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** Status, result and error in one comparable string. */
export function fingerprint(seen: Omit<Seen, "revision">): string {
  const result = seen.result === undefined ? "-" : createHash("sha1").update(seen.result).digest("hex");
  return `${seen.status}|${result}|${seen.errorName ?? "-"}|${seen.errorMessage ?? "-"}`;
}

export interface SeenState {
  /** When the observer began to watch this instance. */
  readonly since: number;
  lastRevision: number;
  count: number;
  terminal: { revision: number; fingerprint: string; at: number; clientMade: boolean } | undefined;
  /** Deliveries with a revision lower than one already seen (the SDK's handles drop these). */
  stale: number;
}

/** A change seen after the end, or an end seen twice with different content. */
export interface AfterEnd {
  readonly observer: string;
  readonly id: string;
  readonly terminal: { revision: number; fingerprint: string };
  readonly later: { revision: number; fingerprint: string };
  readonly at: number;
}

export class ObserverLog {
  readonly name: string;
  readonly #states = new Map<string, SeenState>();
  readonly afterEnd: AfterEnd[] = [];

  constructor(name: string) {
    this.name = name;
  }

  /** Marks `id` as one this observer must end up seeing in its final state. */
  expect(id: string): void {
    if (!this.#states.has(id))
      this.#states.set(id, { since: Date.now(), lastRevision: 0, count: 0, terminal: undefined, stale: 0 });
  }

  see(id: string, seen: Seen, at: number): void {
    let state = this.#states.get(id);
    if (state === undefined) {
      state = { since: at, lastRevision: 0, count: 0, terminal: undefined, stale: 0 };
      this.#states.set(id, state);
    }
    state.count++;
    const clientMade = seen.revision >= CLIENT_MADE_REVISION;
    const print = fingerprint(seen);
    if (state.terminal !== undefined && !state.terminal.clientMade && !clientMade) {
      const t = state.terminal;
      if (seen.revision > t.revision || (seen.revision === t.revision && print !== t.fingerprint)) {
        this.afterEnd.push({
          observer: this.name,
          id,
          terminal: t,
          later: { revision: seen.revision, fingerprint: print },
          at,
        });
      }
    }
    if (seen.revision < state.lastRevision && !clientMade) state.stale++;
    if (!clientMade) state.lastRevision = Math.max(state.lastRevision, seen.revision);
    if (state.terminal === undefined && TERMINAL.has(seen.status)) {
      state.terminal = { revision: seen.revision, fingerprint: print, at, clientMade };
    }
  }

  state(id: string): SeenState | undefined {
    return this.#states.get(id);
  }

  ids(): IterableIterator<string> {
    return this.#states.keys();
  }

  get size(): number {
    return this.#states.size;
  }
}
