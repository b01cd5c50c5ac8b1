import { createRequire } from "node:module";
import type * as OpenTelemetry from "@opentelemetry/api";
import type { TaskOutcome } from "./run-task-function.js";

/**
 * OpenTelemetry traces (SPEC §6), through `@opentelemetry/api` only, an optional peer dependency.
 * A call of a task makes a producer span (`send <task>`) whose trace context travels with the
 * instance; each attempt runs in a consumer span (`process <task>`) that links to it. A link, not
 * a parent: an instance that runs for hours, or is retried for days, makes a trace of its own
 * per attempt rather than one that never ends.
 *
 * Nothing happens until the app registers an SDK: the check is one property read of the global
 * the API registers providers in (its documented way for several copies of the API to share
 * one), so the API is not even loaded by an app that traces nothing.
 */

type Api = typeof OpenTelemetry;

/** Where `@opentelemetry/api` 1.x keeps its registered globals, shared by every copy of it. */
const API_GLOBAL = Symbol.for("opentelemetry.js.api.1");
const TRACER_NAME = "numerous-tasks";
/** The most a trace context may take, as JSON: W3C's traceparent, tracestate and some baggage. */
export const MAX_TRACE_CONTEXT_BYTES = 8 * 1024;

/** undefined: not tried yet; null: not installed (tried once, never again). */
let loaded: Api | null | undefined;

/** The API when an SDK has registered a tracer provider in this process; undefined otherwise. */
function tracingApi(): Api | undefined {
  const registered = (globalThis as Record<symbol, { trace?: unknown } | undefined>)[API_GLOBAL];
  if (registered?.trace === undefined) return undefined;
  if (loaded === undefined) loaded = loadApi();
  return loaded ?? undefined;
}

/**
 * Loads the API synchronously: a task call returns its handle at once, and a dynamic import
 * would leave the calls made before it resolved untraced. Resolved from this package, as a peer
 * dependency is; Node loads one copy of it for `import` and `require` alike.
 */
function loadApi(): Api | null {
  try {
    return createRequire(import.meta.url)("@opentelemetry/api") as Api;
  } catch {
    return null;
  }
}

/** A call's producer span, open until the executor has the instance. */
export interface SendSpan {
  /** The trace context to store with the instance (JSON), when there is one to link to. */
  readonly traceContext: string | undefined;
  /** Ends the span; with the error the submit threw, if it did. */
  end(error?: unknown): void;
}

/**
 * Starts the producer span of a call of `taskName` making instance `instanceId`, a child of
 * whatever span is active. Undefined when nothing traces.
 */
export function startSendSpan(taskName: string, instanceId: string): SendSpan | undefined {
  const api = tracingApi();
  if (api === undefined) return undefined;
  try {
    const parent = api.context.active();
    const span = api.trace.getTracer(TRACER_NAME).startSpan(
      `send ${taskName}`,
      {
        kind: api.SpanKind.PRODUCER,
        attributes: {
          "messaging.system": "numerous_tasks",
          "messaging.operation.type": "send",
          "messaging.operation.name": "send",
          "messaging.destination.name": taskName,
          "messaging.message.id": instanceId,
        },
      },
      parent,
    );
    const carrier: Record<string, string> = {};
    api.propagation.inject(api.trace.setSpan(parent, span), carrier);
    // Without a registered propagator nothing is injected: W3C's traceparent still carries the link.
    if (Object.keys(carrier).length === 0) {
      const traceparent = formatTraceparent(api, span.spanContext());
      if (traceparent !== undefined) carrier.traceparent = traceparent;
    }
    const encoded = Object.keys(carrier).length === 0 ? undefined : JSON.stringify(carrier);
    return {
      traceContext:
        encoded !== undefined && Buffer.byteLength(encoded) <= MAX_TRACE_CONTEXT_BYTES ? encoded : undefined,
      end: (error) => {
        if (error !== undefined) failSpan(api, span, error);
        span.end();
      },
    };
  } catch {
    // Telemetry never breaks a call.
    return undefined;
  }
}

/** What a consumer span needs to know of the attempt it covers. */
export interface AttemptTrace {
  readonly taskName: string;
  readonly instanceId: string;
  /** 1-based. */
  readonly attempt: number;
  /** As stored with the instance; absent when the call was not traced. */
  readonly traceContext: string | undefined;
}

/** Whether attempts should run through {@link runInProcessSpan}: an SDK is registered. */
export function isTracing(): boolean {
  return tracingApi() !== undefined;
}

/**
 * Runs one attempt in its consumer span: a new trace linked to the call's span, active while the
 * task runs (spans the task makes are its children). The span ends with the attempt, in error
 * when it failed. Without an SDK, just runs it.
 */
export function runInProcessSpan(
  attempt: AttemptTrace,
  run: () => TaskOutcome | Promise<TaskOutcome>,
): TaskOutcome | Promise<TaskOutcome> {
  const api = tracingApi();
  if (api === undefined) return run();
  let span: OpenTelemetry.Span;
  try {
    const linked = linkedContext(api, attempt.traceContext);
    span = api.trace.getTracer(TRACER_NAME).startSpan(`process ${attempt.taskName}`, {
      kind: api.SpanKind.CONSUMER,
      root: true,
      ...(linked === undefined ? {} : { links: [{ context: linked }] }),
      attributes: {
        "messaging.system": "numerous_tasks",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": attempt.taskName,
        "messaging.message.id": attempt.instanceId,
        "numerous_tasks.attempt": attempt.attempt,
      },
    });
  } catch {
    return run();
  }
  const ended = (outcome: TaskOutcome): TaskOutcome => {
    try {
      span.setAttribute("numerous_tasks.status", outcome.status);
      if (outcome.status === "failed") {
        span.recordException({
          name: outcome.error.name,
          message: outcome.error.message,
          ...(outcome.error.stack === undefined ? {} : { stack: outcome.error.stack }),
        });
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: outcome.error.message });
      }
      span.end();
    } catch {
      // Telemetry never changes how a task ended.
    }
    return outcome;
  };
  let outcome: TaskOutcome | Promise<TaskOutcome>;
  try {
    outcome = api.context.with(api.trace.setSpan(api.context.active(), span), run);
  } catch (thrown) {
    failSpan(api, span, thrown);
    span.end();
    throw thrown;
  }
  return outcome instanceof Promise ? outcome.then(ended) : ended(outcome);
}

/**
 * Lets the registered SDK export what it holds (a workload process is about to exit), for at
 * most `timeoutMs`. Does nothing without an SDK, or one without `forceFlush`.
 */
export async function flushTraces(timeoutMs: number): Promise<void> {
  const api = tracingApi();
  if (api === undefined) return;
  const provider = api.trace.getTracerProvider() as { getDelegate?: () => unknown };
  const delegate = (provider.getDelegate?.() ?? provider) as { forceFlush?: () => Promise<void> };
  if (typeof delegate.forceFlush !== "function") return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    delegate.forceFlush().catch(() => undefined),
    new Promise<void>((done) => {
      timer = setTimeout(done, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

/**
 * Checks a trace context from outside (a client of the daemon): a JSON object of strings, within
 * {@link MAX_TRACE_CONTEXT_BYTES}. Returns why not, or undefined when it is good.
 */
export function checkTraceContext(traceContext: string): string | undefined {
  if (Buffer.byteLength(traceContext) > MAX_TRACE_CONTEXT_BYTES) {
    return `the trace context is larger than ${MAX_TRACE_CONTEXT_BYTES} bytes`;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(traceContext);
  } catch {
    return "the trace context is not JSON";
  }
  if (
    typeof parsed !== "object" ||
    parsed === null ||
    Array.isArray(parsed) ||
    !Object.values(parsed).every((value) => typeof value === "string")
  ) {
    return "the trace context is not a JSON object of strings";
  }
  return undefined;
}

/** The span context the call's trace context names, through the registered propagator or W3C's traceparent. */
function linkedContext(api: Api, traceContext: string | undefined): OpenTelemetry.SpanContext | undefined {
  if (traceContext === undefined) return undefined;
  let carrier: Record<string, string>;
  try {
    carrier = JSON.parse(traceContext) as Record<string, string>;
  } catch {
    return undefined;
  }
  if (typeof carrier !== "object" || carrier === null) return undefined;
  const extracted = api.trace.getSpanContext(api.propagation.extract(api.ROOT_CONTEXT, carrier));
  if (extracted !== undefined && api.isSpanContextValid(extracted)) return extracted;
  return parseTraceparent(api, carrier.traceparent);
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function formatTraceparent(api: Api, context: OpenTelemetry.SpanContext): string | undefined {
  if (!api.isSpanContextValid(context)) return undefined;
  return `00-${context.traceId}-${context.spanId}-${(context.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

function parseTraceparent(api: Api, value: unknown): OpenTelemetry.SpanContext | undefined {
  const match = typeof value === "string" ? TRACEPARENT.exec(value) : null;
  if (match === null) return undefined;
  const context: OpenTelemetry.SpanContext = {
    traceId: match[1] as string,
    spanId: match[2] as string,
    traceFlags: Number.parseInt(match[3] as string, 16),
    isRemote: true,
  };
  return api.isSpanContextValid(context) ? context : undefined;
}

function failSpan(api: Api, span: OpenTelemetry.Span, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  span.recordException(error instanceof Error ? error : message);
  span.setStatus({ code: api.SpanStatusCode.ERROR, message });
}
