import { type OptionEntry, readyFirst } from "./entry.js";
import { Heap } from "../sdk/heap.js";

/** One concurrency key of a task (`""` for instances without one). */
class KeyGroup {
  running = 0;
  /** Held back, best first. */
  readonly blocked = new Heap<OptionEntry>(readyFirst);
  /** Sent back to the ready queue during the current wake, not started yet. */
  moving = 0;
}

/** A task whose instances have concurrency limits. */
class TaskGate {
  running = 0;
  readonly groups = new Map<string, KeyGroup>();

  group(key: string): KeyGroup {
    let group = this.groups.get(key);
    if (group === undefined) this.groups.set(key, (group = new KeyGroup()));
    return group;
  }
}

/**
 * A task's concurrency limits across the executor (SPEC §4 `concurrency`): at most
 * `concurrencyLimit` of its instances run at once, and at most `perKeyLimit` per concurrency key.
 *
 * An instance that would pass a limit is held back here, by key, so it never blocks another
 * task's instances, nor its own task's instances of other keys. When one of the task's instances
 * ends, the best held-back instances that now fit go back to the ready queue (`ready`), as many
 * as there is room for; the executor checks them again when it takes them, so one that lost its
 * slot to a better-ranked instance meanwhile is simply held back again.
 */
export class ConcurrencyGates {
  readonly #gates = new Map<string, TaskGate>();
  readonly #ready: (entry: OptionEntry) => void;

  constructor(ready: (entry: OptionEntry) => void) {
    this.#ready = ready;
  }

  /**
   * Takes a slot for `entry` when its limits allow (true), or holds it back (false). Instances
   * without limits always pass.
   */
  admit(entry: OptionEntry): boolean {
    const { concurrencyLimit, perKeyLimit } = entry.spec;
    if (concurrencyLimit === undefined && perKeyLimit === undefined) return true;
    let gate = this.#gates.get(entry.snapshot.taskName);
    if (gate === undefined) this.#gates.set(entry.snapshot.taskName, (gate = new TaskGate()));
    const group = gate.group(keyOf(entry));
    if (
      (concurrencyLimit !== undefined && gate.running >= concurrencyLimit) ||
      (perKeyLimit !== undefined && group.running >= perKeyLimit)
    ) {
      group.blocked.push(entry);
      return false;
    }
    gate.running++;
    group.running++;
    return true;
  }

  /** Gives back the slot `entry` took, and sends what now fits back to the ready queue. */
  release(entry: OptionEntry): void {
    const gate = this.#gates.get(entry.snapshot.taskName);
    if (gate === undefined) return;
    const group = gate.groups.get(keyOf(entry));
    if (group === undefined) return;
    gate.running--;
    group.running--;
    this.#wake(entry.snapshot.taskName, gate);
  }

  /**
   * `entry` was sent back to the ready queue but ended (a stop) before it was taken: the room it
   * was sent back for goes to the next one.
   */
  dropped(entry: OptionEntry): void {
    const gate = this.#gates.get(entry.snapshot.taskName);
    if (gate !== undefined) this.#wake(entry.snapshot.taskName, gate);
  }

  #wake(taskName: string, gate: TaskGate): void {
    let moved = 0;
    for (;;) {
      let best: OptionEntry | undefined;
      let from: KeyGroup | undefined;
      for (const group of gate.groups.values()) {
        let head = group.blocked.peek();
        // Instances stopped while held back are dropped here, lazily.
        while (head !== undefined && !head.waiting) {
          group.blocked.pop();
          head = group.blocked.peek();
        }
        if (head === undefined) continue;
        const { concurrencyLimit, perKeyLimit } = head.spec;
        if (concurrencyLimit !== undefined && gate.running + moved >= concurrencyLimit) continue;
        if (perKeyLimit !== undefined && group.running + group.moving >= perKeyLimit) continue;
        if (best === undefined || readyFirst(head, best)) {
          best = head;
          from = group;
        }
      }
      if (best === undefined || from === undefined) break;
      from.blocked.pop();
      from.moving++;
      moved++;
      this.#ready(best);
    }
    for (const [key, group] of gate.groups) {
      group.moving = 0;
      if (group.running === 0 && group.blocked.size === 0) gate.groups.delete(key);
    }
    if (gate.groups.size === 0) this.#gates.delete(taskName);
  }
}

function keyOf(entry: OptionEntry): string {
  return entry.spec.perKeyLimit === undefined ? "" : (entry.spec.concurrencyKey ?? "");
}
