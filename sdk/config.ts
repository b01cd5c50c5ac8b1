import { ExecutorConfigError } from "./errors.js";

/** The executor settings of SPEC section 2, validated. */
export interface NumerousConfig {
  /** Which executor runs tasks. */
  readonly executor: "local" | "platform";
  /** The daemon's gRPC address: `host:port`, `unix:/path`, or with `https://` for TLS. */
  readonly address: string;
  readonly accessToken: string | undefined;
  readonly deploymentId: string | undefined;
  readonly organizationId: string | undefined;
  /** Local executor: how many instances run at once. */
  readonly concurrency: number;
  /** Set in a workload process that the daemon started. */
  readonly workload: { readonly instanceId: string; readonly input: string | undefined } | undefined;
  /** PEM file of a CA that signs the daemon's certificate (TLS). */
  readonly tlsCaFile: string | undefined;
}

const EXECUTORS: Readonly<Record<string, NumerousConfig["executor"]>> = {
  local: "local",
  NUMEROUS_LOCAL_EXECUTOR: "local",
  platform: "platform",
  NUMEROUS_PLATFORM_EXECUTOR: "platform",
};

const DEFAULT_EXECUTOR_ADDRESS = "127.0.0.1:7777";
export const DEFAULT_CONCURRENCY = 4;

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Reads the environment once into a typed config. Takes the environment as an argument so
 * tests pass plain objects.
 * @throws {ExecutorConfigError} naming the variable and the valid values.
 */
export function loadConfig(env: Env = process.env): NumerousConfig {
  const chosen = env.NUMEROUS_EXECUTOR;
  let executor: NumerousConfig["executor"] = "local";
  if (chosen !== undefined && chosen !== "") {
    const known = EXECUTORS[chosen];
    if (known === undefined) {
      throw new ExecutorConfigError(
        "NUMEROUS_EXECUTOR",
        chosen,
        `unknown executor; valid values are ${Object.keys(EXECUTORS).join(", ")} (or leave it unset for local)`,
      );
    }
    executor = known;
  }
  const instanceId = nonEmpty(env.NUMEROUS_TASK_INSTANCE_ID);
  return {
    executor,
    address: nonEmpty(env.NUMEROUS_EXECUTOR_ADDRESS) ?? DEFAULT_EXECUTOR_ADDRESS,
    accessToken: nonEmpty(env.NUMEROUS_API_ACCESS_TOKEN),
    deploymentId: nonEmpty(env.NUMEROUS_DEPLOYMENT_ID),
    organizationId: nonEmpty(env.NUMEROUS_ORGANIZATION_ID),
    concurrency: positiveInteger(env, "NUMEROUS_TASK_CONCURRENCY", DEFAULT_CONCURRENCY),
    workload: instanceId === undefined ? undefined : { instanceId, input: env.TASK_DATA_INPUT },
    tlsCaFile: nonEmpty(env.NUMEROUS_EXECUTOR_TLS_CA),
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

/** Reads a whole number of at least 1, or the default when unset. */
function positiveInteger(env: Env, variable: string, fallback: number): number {
  const raw = nonEmpty(env[variable]);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    throw new ExecutorConfigError(variable, raw, "expected a whole number of at least 1");
  }
  return value;
}
