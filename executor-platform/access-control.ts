import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";

/** Which deployments a token may use; `*` is all of them. */
export interface TokenGrant {
  readonly token: string;
  readonly deployments: readonly string[];
}

/** What a caller is allowed, or why not. */
export type Access =
  | { readonly ok: true; readonly deployment: string }
  | { readonly ok: false; readonly reason: "unauthenticated" | "permission-denied"; readonly message: string };

export const DEFAULT_DEPLOYMENT = "default";

/**
 * Checks bearer tokens in constant time and binds each to the deployments it may use. With no
 * grants at all, every caller is let in (the daemon then listens on loopback only).
 */
export class AccessControl {
  readonly #grants: ReadonlyArray<{ digest: Buffer; deployments: ReadonlySet<string> }>;

  constructor(grants: readonly TokenGrant[]) {
    this.#grants = grants.map((grant) => ({ digest: digest(grant.token), deployments: new Set(grant.deployments) }));
  }

  get enabled(): boolean {
    return this.#grants.length > 0;
  }

  /**
   * @param authorization the `authorization` header, `Bearer <token>`.
   * @param deployment the `x-numerous-deployment` header; the default deployment when empty.
   */
  check(authorization: string | undefined, deployment: string | undefined): Access {
    const wanted = deployment || DEFAULT_DEPLOYMENT;
    if (!this.enabled) return { ok: true, deployment: wanted };
    const token = authorization?.startsWith("Bearer ") ? authorization.slice(7) : "";
    if (token === "") return { ok: false, reason: "unauthenticated", message: "missing access token (set NUMEROUS_API_ACCESS_TOKEN)" };
    const given = digest(token);
    let match: ReadonlySet<string> | undefined;
    // Compare with every grant, so the time taken says nothing about which one matched.
    for (const grant of this.#grants) {
      if (timingSafeEqual(given, grant.digest)) match = grant.deployments;
    }
    if (match === undefined) return { ok: false, reason: "unauthenticated", message: "wrong access token" };
    if (!match.has("*") && !match.has(wanted)) {
      return { ok: false, reason: "permission-denied", message: `this token may not use deployment ${JSON.stringify(wanted)}` };
    }
    return { ok: true, deployment: wanted };
  }
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

/**
 * Reads grants from a tokens file: one grant a line, `<token> <deployment>[,<deployment>...]`
 * (`*` for all), `#` comments and blank lines ignored; or the same lines separated by `;` in an
 * environment variable.
 * @throws {Error} naming the line that is malformed.
 */
export function parseTokenGrants(text: string, source: string): TokenGrant[] {
  const grants: TokenGrant[] = [];
  text.split(/[\n;]/).forEach((raw, index) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const [token, deployments, extra] = line.split(/\s+/);
    if (token === undefined || deployments === undefined || extra !== undefined || token.length < 8) {
      throw new Error(`${source}, entry ${index + 1}: expected "<token of 8+ characters> <deployment>[,<deployment>...]"`);
    }
    grants.push({ token, deployments: deployments.split(",").filter((d) => d !== "") });
  });
  return grants;
}

/** Grants from `--token` (all deployments), a tokens file, and a tokens variable. */
export function loadTokenGrants(options: { token?: string; tokensFile?: string; tokens?: string }): TokenGrant[] {
  const grants: TokenGrant[] = [];
  if (options.token !== undefined) grants.push({ token: options.token, deployments: ["*"] });
  if (options.tokensFile !== undefined) {
    grants.push(...parseTokenGrants(readFileSync(options.tokensFile, "utf8"), options.tokensFile));
  }
  if (options.tokens !== undefined) grants.push(...parseTokenGrants(options.tokens, "NUMEROUS_EXECUTOR_TOKENS"));
  return grants;
}
