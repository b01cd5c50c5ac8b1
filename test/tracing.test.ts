/**
 * OpenTelemetry traces (SPEC §6): a producer span per call, a consumer span per attempt linked to
 * it (a link, not a parent), in the local executor and through a real daemon, whose workloads are
 * other processes (they load an SDK that writes their spans to a file); and nothing at all, with
 * everything still running, when no SDK is registered.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import {
  type Executor,
  LocalExecutor,
  PlatformExecutor,
  TaskFailedError,
  setExecutor,
  waitForCompletion,
} from "numerous-tasks";
import { afterEach, describe, expect, it } from "vitest";
import { add, throwsError } from "./fixtures/contract-tasks.js";
import { failsOnce } from "./fixtures/telemetry-tasks.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";
import { pollUntil } from "./helpers/deadline.js";
import { rejectionOf } from "./helpers/handles.js";

const PRELOAD = join(import.meta.dirname, "fixtures", "trace-to-file.mjs");

/** A span as the workloads' preload writes it. */
interface FileSpan {
  readonly name: string;
  readonly kind: number;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly links: ReadonlyArray<{ traceId: string; spanId: string }>;
  readonly attributes: Readonly<Record<string, unknown>>;
  readonly status: { code: number; message?: string };
  readonly pid: number;
}

const exporter = new InMemorySpanExporter();
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  trace.disable();
  exporter.reset();
});

function registerSdk(): void {
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
}

function use(executor: Executor): void {
  setExecutor(executor);
  cleanups.push(() => executor.close());
}

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The one finished span named `name` of instance `id`. */
function spanOf(name: string, id: string): ReadableSpan {
  const found = exporter
    .getFinishedSpans()
    .filter((span) => span.name === name && span.attributes["messaging.message.id"] === id);
  expect(found, `${name} spans of ${id}`).toHaveLength(1);
  return found[0] as ReadableSpan;
}

describe("traces", () => {
  it("with no SDK registered, tasks run as ever and nothing is traced", async () => {
    use(new LocalExecutor());
    expect(await waitForCompletion(add(2, 3))).toBe(5);
    expect(await rejectionOf(waitForCompletion(throwsError("no trace")))).toBeInstanceOf(TaskFailedError);
    registerSdk();
    expect(exporter.getFinishedSpans()).toEqual([]);
  });

  it("locally: a producer span per call, and a consumer span linked to it, in a trace of its own", async () => {
    registerSdk();
    use(new LocalExecutor());
    const ok = add(1, 2);
    const bad = throwsError("boom");
    expect(await waitForCompletion(ok)).toBe(3);
    await rejectionOf(waitForCompletion(bad));

    for (const [task, instance] of [
      ["add", ok],
      ["throwsError", bad],
    ] as const) {
      const send = spanOf(`send ${task}`, instance.id);
      const process = spanOf(`process ${task}`, instance.id);
      expect(send.kind).toBe(SpanKind.PRODUCER);
      expect(process.kind).toBe(SpanKind.CONSUMER);
      expect(send.attributes["messaging.destination.name"]).toBe(task);
      expect(process.attributes["messaging.destination.name"]).toBe(task);
      expect(process.attributes["numerous_tasks.attempt"]).toBe(1);
      expect(process.links.map((link) => link.context)).toEqual([
        expect.objectContaining({ traceId: send.spanContext().traceId, spanId: send.spanContext().spanId }),
      ]);
      // Linked, not parented: the attempt starts a trace of its own.
      expect(process.spanContext().traceId).not.toBe(send.spanContext().traceId);
      expect(process.parentSpanContext).toBeUndefined();
    }
    const failed = spanOf("process throwsError", bad.id);
    expect(failed.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed.status.message).toBe("boom");
    expect(spanOf("process add", ok.id).status.code).toBe(SpanStatusCode.UNSET);
  });

  it("locally: a retried instance has a consumer span per attempt, each linked to the one call", async () => {
    registerSdk();
    use(new LocalExecutor());
    const retried = failsOnce(join(tempDir("nt-traces-"), "marker"));
    expect(await waitForCompletion(retried)).toBe("second attempt");
    const send = spanOf("send failsOnce", retried.id).spanContext();
    const attempts = exporter
      .getFinishedSpans()
      .filter(
        (span) => span.name === "process failsOnce" && span.attributes["messaging.message.id"] === retried.id,
      );
    expect(attempts.map((span) => span.attributes["numerous_tasks.attempt"])).toEqual([1, 2]);
    expect(attempts.map((span) => span.status.code)).toEqual([SpanStatusCode.ERROR, SpanStatusCode.UNSET]);
    for (const span of attempts) {
      expect(span.links.map((link) => link.context)).toEqual([
        expect.objectContaining({ traceId: send.traceId, spanId: send.spanId }),
      ]);
    }
    expect(new Set(attempts.map((span) => span.spanContext().traceId)).size).toBe(2);
  });

  it("through a daemon: each attempt's span, made in its workload process, links to the call's", async () => {
    registerSdk();
    const dir = tempDir("nt-traces-");
    const spansFile = join(dir, "spans.jsonl");
    const daemon: DaemonProcess = await startDaemon({
      args: ["--concurrency", "2"],
      env: {
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import ${pathToFileURL(PRELOAD).href}`.trim(),
        NT_TEST_SPANS_FILE: spansFile,
      },
    });
    cleanups.push(async () => {
      await daemon.stop();
      removeDataDir(daemon.dataDir);
    });
    use(
      new PlatformExecutor({
        address: daemon.address,
        accessToken: undefined,
        deploymentId: undefined,
        tlsCaFile: undefined,
      }),
    );

    const plain = add(20, 22);
    const retried = failsOnce(join(dir, "marker"));
    expect(await waitForCompletion(plain)).toBe(42);
    expect(await waitForCompletion(retried)).toBe("second attempt");

    const read = (): FileSpan[] => {
      try {
        return readFileSync(spansFile, "utf8")
          .split("\n")
          .filter((line) => line !== "")
          .map((line) => JSON.parse(line) as FileSpan);
      } catch {
        return [];
      }
    };
    await pollUntil(() => read().length >= 3, "three attempt spans in the workloads' span file");
    const fromWorkloads = read();
    expect(fromWorkloads.map((span) => span.name).sort()).toEqual([
      "process add",
      "process failsOnce",
      "process failsOnce",
    ]);
    for (const [task, instance, attempts] of [
      ["add", plain, 1],
      ["failsOnce", retried, 2],
    ] as const) {
      const send = spanOf(`send ${task}`, instance.id).spanContext();
      const spans = fromWorkloads
        .filter((span) => span.attributes["messaging.message.id"] === instance.id)
        .sort(
          (a, b) =>
            Number(a.attributes["numerous_tasks.attempt"]) - Number(b.attributes["numerous_tasks.attempt"]),
        );
      expect(spans.map((span) => span.attributes["numerous_tasks.attempt"])).toEqual(
        Array.from({ length: attempts }, (_, i) => i + 1),
      );
      for (const span of spans) {
        expect(span.kind).toBe(SpanKind.CONSUMER);
        expect(span.pid).not.toBe(process.pid);
        expect(span.links).toEqual([{ traceId: send.traceId, spanId: send.spanId }]);
        expect(span.traceId).not.toBe(send.traceId);
        expect(span.parentSpanId).toBeUndefined();
      }
      if (task === "failsOnce") {
        expect(spans[0]?.status).toEqual({ code: SpanStatusCode.ERROR, message: "the first attempt fails" });
        expect(spans[1]?.status.code).toBe(SpanStatusCode.UNSET);
      }
    }
    // Both attempts of the retried instance ran in their own traces.
    const retriedTraces = new Set(
      fromWorkloads.filter((span) => span.name === "process failsOnce").map((span) => span.traceId),
    );
    expect(retriedTraces.size).toBe(2);
  });
});
