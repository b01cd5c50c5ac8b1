import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Workload tokens are HMACs of what the workload may report for, under a secret kept in the
 * data directory: a restarted daemon can still check the token of a workload that reconnects.
 */
export class WorkloadTokens {
  readonly #secret: Buffer;

  constructor(secret: Buffer) {
    this.#secret = secret;
  }

  static fromDataDir(dataDir: string): WorkloadTokens {
    mkdirSync(dataDir, { recursive: true });
    const file = join(dataDir, "workload-secret");
    if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString("hex"), { mode: 0o600, flag: "wx" });
    return new WorkloadTokens(Buffer.from(readFileSync(file, "utf8").trim(), "hex"));
  }

  /** The token of a process-mode workload: good for one instance only. */
  forInstance(instanceId: string): string {
    return this.#sign(`instance:${instanceId}`);
  }

  /** The token of a pool worker: good for what the daemon gives it. */
  forPool(): string {
    return this.#sign("pool");
  }

  /** The token of a process-mode runner started ahead of demand: good for the one instance it is given. */
  forWarm(): string {
    return this.#sign("warm");
  }

  /**
   * The access token a process-mode workload calls the task service with: a client of its own
   * deployment, as the app that submitted its instance is, so that a task can run other tasks.
   */
  forDeployment(deploymentId: string): string {
    return this.#sign(`deployment:${deploymentId}`);
  }

  /** Whether `token` is {@link forDeployment} of `deploymentId`. */
  allowsDeployment(token: string, deploymentId: string): boolean {
    return equal(token, this.forDeployment(deploymentId));
  }

  /** What a token allows: one instance, any the daemon assigned (pool), the one it is given (warm), or nothing. */
  check(token: string, instanceId: string): "instance" | "pool" | "warm" | undefined {
    if (instanceId !== "" && equal(token, this.forInstance(instanceId))) return "instance";
    if (equal(token, this.forPool())) return "pool";
    if (equal(token, this.forWarm())) return "warm";
    return undefined;
  }

  #sign(subject: string): string {
    return createHmac("sha256", this.#secret).update(subject).digest("base64url");
  }
}

function equal(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}
