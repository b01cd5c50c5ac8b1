import { createHash, randomFillSync } from "node:crypto";

const ID_LENGTH = 21;
const DASH = 45;
const UNDERSCORE = 95;
/** The URL-safe alphabet (base64url's, as nanoid's): the low 6 bits of a random byte pick one. */
const ALPHABET = Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", "latin1");
/** Random bytes already mapped to ALPHABET, refilled when spent (once per 512 ids). */
const pool = Buffer.allocUnsafe(ID_LENGTH * 512);
let poolOffset = pool.length;

/**
 * A new instance id: 21 URL-safe characters (about 126 random bits, as a nanoid), never
 * starting with `-` or `_`, so an id never reads as a command-line option ("-x..."). A first
 * character that would be one of them is skipped for the next random one (1 time in 32), so the
 * first character stays uniform over letters and digits.
 *
 * Made here rather than with `nanoid()`: ids are made on every task call, and a nanoid is built
 * a character at a time into a string the instance map must flatten before hashing; one latin1
 * slice of a pool mapped at refill costs about half as much, id and map insert together.
 */
export function createInstanceId(): string {
  for (;;) {
    if (poolOffset + ID_LENGTH > pool.length) refillPool();
    const first = pool[poolOffset];
    if (first === DASH || first === UNDERSCORE) {
      poolOffset++;
      continue;
    }
    const id = pool.toString("latin1", poolOffset, poolOffset + ID_LENGTH);
    poolOffset += ID_LENGTH;
    return id;
  }
}

function refillPool(): void {
  randomFillSync(pool);
  for (let i = 0; i < pool.length; i++) pool[i] = ALPHABET[(pool[i] as number) & 63] as number;
  poolOffset = 0;
}

const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Instance ids are made by clients, so the daemon checks them: URL-safe, 1 to 64 characters. */
export function isValidInstanceId(id: unknown): id is string {
  return typeof id === "string" && ID_PATTERN.test(id);
}

/** A definition's id depends only on its name, so it is the same in every process. */
export function definitionIdFor(name: string): string {
  return `td_${createHash("sha256").update(name).digest("base64url").slice(0, 22)}`;
}
