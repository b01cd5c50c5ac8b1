import { createHash } from "node:crypto";

/**
 * The instance id of one occurrence of a schedule: derived from the deployment, the schedule's
 * name and the occurrence time, so every daemon (and a daemon after a restart) that fires it
 * makes the same id, and the store keeps one instance. URL-safe, 33 characters, starting with `s`.
 */
export function occurrenceInstanceId(namespace: string, schedule: string, occurrenceAt: number): string {
  const digest = createHash("sha256")
    .update(`schedule\u0000${namespace}\u0000${schedule}\u0000${occurrenceAt}`)
    .digest("base64url");
  return `s${digest.slice(0, 32)}`;
}
