import { createHash } from "node:crypto";
import { nanoid } from "nanoid";

const DASH = 45;
const UNDERSCORE = 95;

/**
 * A new instance id: a nanoid, 21 URL-safe characters (about 126 random bits), never starting
 * with `-` or `_`, so an id never reads as a command-line option ("-x..."). Drawing again in
 * that case (1 time in 32) keeps the first character uniform over letters and digits.
 */
export function createInstanceId(): string {
  for (;;) {
    const id = nanoid();
    const first = id.charCodeAt(0);
    if (first !== DASH && first !== UNDERSCORE) return id;
  }
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
