import { createHash, randomFillSync } from "node:crypto";

const ALPHABET = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict";
const POOL_SIZE = 21 * 256;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let offset = POOL_SIZE;
const CODES = Buffer.from(ALPHABET, "latin1");
// The first character is a letter, so an id never reads as a command-line option ("-x...").
const FIRST = Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789xy", "latin1");
const scratch = Buffer.allocUnsafe(21);

/**
 * A new instance id: 21 URL-safe characters (the nanoid scheme, about 126 random bits), never
 * starting with `-` or `_`.
 */
export function createInstanceId(): string {
  if (offset + 21 > POOL_SIZE) {
    randomFillSync(pool);
    offset = 0;
  }
  scratch[0] = FIRST[(pool[offset] as number) & 63] as number;
  for (let i = 1; i < 21; i++) scratch[i] = CODES[(pool[offset + i] as number) & 63] as number;
  offset += 21;
  return scratch.toString("latin1", 0, 21);
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
