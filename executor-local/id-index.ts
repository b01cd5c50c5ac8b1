/**
 * Instance id to position in creation order, for an executor that keeps every instance.
 *
 * A `Map<string, number>` does the same, but with hundreds of thousands of ids each insert
 * costs about as much as the rest of a submit: the map hashes a fresh string, and on growth
 * reads every key string again, scattered over the heap. This table keeps a 32-bit hash per
 * position and open-addressed slots in typed arrays (outside the collected heap, no pointers
 * for the collector to follow); it reads an id string only to confirm a matching hash.
 */
export class IdIndex {
  /** Position + 1 per slot, 0 for empty; the length is a power of two, at most half used. */
  #slots = new Int32Array(1024);
  /** The hash of the id at each position. */
  #hashes = new Int32Array(512);
  #size = 0;
  readonly #idAt: (position: number) => string;

  /** `idAt(position)` is the id added at that position. */
  constructor(idAt: (position: number) => string) {
    this.#idAt = idAt;
  }

  /** Adds `id` at the next position (0, 1, 2, …); the caller checked that it is new. */
  add(id: string): number {
    const position = this.#size;
    if ((position + 1) * 2 > this.#slots.length) this.#grow();
    if (position === this.#hashes.length) {
      const hashes = new Int32Array(position * 2);
      hashes.set(this.#hashes);
      this.#hashes = hashes;
    }
    const hash = hashOf(id);
    this.#hashes[position] = hash;
    place(this.#slots, hash, position);
    this.#size = position + 1;
    return position;
  }

  /** The position of `id`, or `undefined`. */
  get(id: string): number | undefined {
    const hash = hashOf(id);
    const slots = this.#slots;
    const mask = slots.length - 1;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const stored = slots[slot] as number;
      if (stored === 0) return undefined;
      const position = stored - 1;
      if (this.#hashes[position] === hash && this.#idAt(position) === id) return position;
    }
  }

  #grow(): void {
    const slots = new Int32Array(this.#slots.length * 2);
    for (let position = 0; position < this.#size; position++) {
      place(slots, this.#hashes[position] as number, position);
    }
    this.#slots = slots;
  }
}

function place(slots: Int32Array, hash: number, position: number): void {
  const mask = slots.length - 1;
  let slot = hash & mask;
  while (slots[slot] !== 0) slot = (slot + 1) & mask;
  slots[slot] = position + 1;
}

/** FNV-1a over the UTF-16 code units: instance ids are random, so it spreads them evenly. */
function hashOf(id: string): number {
  let hash = 0x811c9dc5 | 0;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 0x01000193);
  return hash;
}
