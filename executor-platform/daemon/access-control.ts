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
  | {
      readonly ok: false;
      readonly reason: "unauthenticated" | "permission-denied";
      readonly message: string;
    };

export const DEFAULT_DEPLOYMENT = "default";

/**
 * Checks bearer tokens in constant time and binds each to the deployments it may use. With no
 * grants at all, every caller is let in (the daemon then listens on loopback only).
 */
export class AccessControl {
  readonly #grants: ReadonlyArray<{ digest: Buffer; deployments: ReadonlySet<string> }>;

  constructor(grants: readonly TokenGrant[]) {
    this.#grants = grants.map((grant) => ({
      digest: digest(grant.token),
      deployments: new Set(grant.deployments),
    }));
  }

  get enabled(): boolean {
    return this.#grants.length > 0;
  }

  /**
   * @param authorization the `authorization` header, `Bearer <token>`.
   * @param deployment the `x-numerous-deployment` header; the default deployment when empty.
   * @param alsoAllows a token no grant knows may still be good for one deployment (a daemon's
   *   own workload calling as a client of its deployment).
   */
  check(
    authorization: string | undefined,
    deployment: string | undefined,
    alsoAllows?: (token: string, deployment: string) => boolean,
  ): Access {
    const wanted = deployment || DEFAULT_DEPLOYMENT;
    if (!this.enabled) return { ok: true, deployment: wanted };
    const token = /^bearer /i.test(authorization ?? "") ? (authorization as string).slice(7).trim() : "";
    if (token === "")
      return {
        ok: false,
        reason: "unauthenticated",
        message: "missing access token (set NUMEROUS_API_ACCESS_TOKEN)",
      };
    const given = digest(token);
    let matched = false;
    let allowed = false;
    // Compare with every grant, so the time taken says nothing about which one matched; a
    // token on several lines may use the deployments of all of them.
    for (const grant of this.#grants) {
      if (timingSafeEqual(given, grant.digest)) {
        matched = true;
        if (grant.deployments.has("*") || grant.deployments.has(wanted)) allowed = true;
      }
    }
    if (!matched) {
      if (alsoAllows?.(token, wanted)) return { ok: true, deployment: wanted };
      return {
        ok: false,
        reason: "unauthenticated",
        message: "wrong access token (check NUMEROUS_API_ACCESS_TOKEN)",
      };
    }
    if (!allowed) {
      return {
        ok: false,
        reason: "permission-denied",
        message: deployment
          ? `this access token may not use deployment ${JSON.stringify(wanted)} (check NUMEROUS_DEPLOYMENT_ID)`
          : `this access token may not use the default deployment: set NUMEROUS_DEPLOYMENT_ID to a deployment it may use`,
      };
    }
    return { ok: true, deployment: wanted };
  }
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

/** Tokens shorter than this are refused: they are too easy to guess. */
export const MIN_TOKEN_LENGTH = 8;

/**
 * Reads grants from a tokens file: one grant a line, `<token> <deployment>[,<deployment>...]`
 * (`*` for all), `#` comments and blank lines ignored; or, from an environment variable, the
 * same entries separated by `;` or new lines.
 * @param source names the file or variable in errors.
 * @throws {Error} naming the line (file) or entry (variable) that is malformed.
 */
export function parseTokenGrants(
  text: string,
  source: string,
  kind: "file" | "variable" = "file",
): TokenGrant[] {
  const grants: TokenGrant[] = [];
  text.split(kind === "file" ? /\r?\n/ : /[\n;]/).forEach((raw, index) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const [token, list, extra] = line.split(/\s+/);
    const deployments = (list ?? "").split(",").filter((d) => d !== "");
    if (
      token === undefined ||
      deployments.length === 0 ||
      extra !== undefined ||
      token.length < MIN_TOKEN_LENGTH
    ) {
      throw new Error(
        `${source}, ${kind === "file" ? "line" : "entry"} ${index + 1}: expected "<token of ${MIN_TOKEN_LENGTH}+ characters> <deployment>[,<deployment>...]" (* for all deployments)`,
      );
    }
    grants.push({ token, deployments });
  });
  return grants;
}

/**
 * Grants from `--token` (all deployments), a tokens file, and a tokens variable.
 * @throws {Error} for a token too short, an unreadable file or a malformed line.
 */
export function loadTokenGrants(options: {
  token?: string;
  tokensFile?: string;
  tokens?: string;
}): TokenGrant[] {
  const grants: TokenGrant[] = [];
  if (options.token !== undefined) {
    // An empty variable from a missing secret must not pass for a token nobody can present.
    if (options.token.trim().length < MIN_TOKEN_LENGTH) {
      throw new Error(`--token (NUMEROUS_EXECUTOR_TOKEN) must be at least ${MIN_TOKEN_LENGTH} characters`);
    }
    grants.push({ token: options.token.trim(), deployments: ["*"] });
  }
  // A tokens source that holds none would leave the daemon open while its operator thinks it closed.
  if (options.tokensFile !== undefined) {
    const fromFile = parseTokenGrants(readFileSync(options.tokensFile, "utf8"), options.tokensFile, "file");
    if (fromFile.length === 0) throw new Error(`${options.tokensFile} holds no tokens`);
    grants.push(...fromFile);
  }
  if (options.tokens !== undefined) {
    const fromVariable = parseTokenGrants(options.tokens, "--tokens (NUMEROUS_EXECUTOR_TOKENS)", "variable");
    if (fromVariable.length === 0) throw new Error("--tokens (NUMEROUS_EXECUTOR_TOKENS) holds no tokens");
    grants.push(...fromVariable);
  }
  return grants;
}
