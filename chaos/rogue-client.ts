/**
 * A client that means harm, or at least knows no better: malformed and oversized messages,
 * random bytes and broken frames, to both of the daemon's services, through gRPC and below it
 * (raw HTTP/2 frames, raw TCP). It speaks for a deployment of its own, "rogue", so it can also
 * try to read, stop or take over the real deployment's instances by id.
 *
 * Each action records how the daemon answered. The harness checks that the daemon stayed up,
 * that no answer leaked internals, and that nothing the rogue did reached a real instance; it
 * counts only the calls the daemon answered, since a call that never got there proves nothing.
 */
import { randomBytes } from "node:crypto";
import { type ClientHttp2Session, connect as http2Connect } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import * as grpc from "@grpc/grpc-js";
import {
  GetInstanceRequest,
  ListInstancesRequest,
  NewInstance,
  Status,
  StopInstanceRequest,
  SubmitRequest,
  TaskServiceClient,
  WatchInstancesRequest,
  WorkloadMessage,
  WorkloadServiceClient,
} from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import {
  FRAME_REFUSAL,
  type Frame,
  FrameReader,
  decodeRefusal,
} from "../executor-platform/protocol/workload-frames.js";
import type { Prng } from "./prng.js";

/** Options of {@link createRogueClient}. */
export interface RogueClientOptions {
  /** The daemon's own address (`host:port` or `unix:/path`), not the proxy. */
  readonly address: string;
  readonly prng: Prng;
  /** Ids of real instances, to aim at. */
  readonly realIds: () => readonly string[];
  /** An absolute path inside the app root that is not a task module the rogue may name. */
  readonly appRoot: string;
  /** The daemon's --max-message-bytes. */
  readonly maxMessageBytes: number;
  /** The daemon's framed workload socket, which a local process could reach. */
  readonly framesSocket?: string;
}

/** What the rogue did and how the daemon answered. */
export interface RogueReport {
  /** Actions run, by name. */
  readonly actions: Record<string, number>;
  /** gRPC status names (or transport outcomes) of the answers, by name. */
  readonly answers: Record<string, number>;
  /** Answers whose text looked like a stack trace or a source path. */
  readonly leaks: string[];
  /** Things the rogue could see or do to the real deployment that it should not have. */
  readonly breaches: string[];
  /**
   * Calls the daemon answered: a gRPC status from the daemon (not UNAVAILABLE, which grpc-js
   * also makes up when it cannot connect, nor a deadline), HTTP/2 settings or a response,
   * a frame back, or a connection the daemon accepted.
   */
  answered: number;
  /** Calls that never reached the daemon (it was down, or did not answer in time). */
  unanswered: number;
}

export interface RogueClient {
  /** Runs one action, picked at random unless named; never throws. */
  act(name?: string): Promise<void>;
  /** The names of its actions. */
  readonly actionNames: readonly string[];
  readonly report: RogueReport;
  close(): void;
}

const ROGUE_DEPLOYMENT = "rogue";
const TIMEOUT_MS = 5_000;
const TASK_PATHS = [
  "Submit",
  "GetInstance",
  "ListInstances",
  "ListDefinitions",
  "StopInstance",
  "WatchInstances",
].map((m) => `/numerous.tasks.v1.TaskService/${m}`);
const WORKLOAD_PATH = "/numerous.tasks.v1.WorkloadService/Connect";

export function createRogueClient(options: RogueClientOptions): RogueClient {
  const { prng } = options;
  const target = options.address;
  const channelOptions = {
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    // Its own connection: the rogue must not share a channel with anyone.
    "grpc.use_local_subchannel_pool": 1,
  };
  const tasks = new TaskServiceClient(target, grpc.credentials.createInsecure(), channelOptions);
  const workloads = new WorkloadServiceClient(target, grpc.credentials.createInsecure(), channelOptions);
  const report: RogueReport = {
    actions: {},
    answers: {},
    leaks: [],
    breaches: [],
    answered: 0,
    unanswered: 0,
  };
  const metadata = () => {
    const m = new grpc.Metadata();
    m.set("x-numerous-deployment", ROGUE_DEPLOYMENT);
    return m;
  };
  const deadline = () => ({ deadline: Date.now() + TIMEOUT_MS });
  const settingsArrived = new WeakSet<ClientHttp2Session>();
  const count = (bag: Record<string, number>, key: string) => {
    bag[key] = (bag[key] ?? 0) + 1;
  };
  const answer = (action: string, outcome: string, reached: boolean, text = "") => {
    count(report.answers, `${action}: ${outcome}`);
    if (reached) report.answered++;
    else report.unanswered++;
    if (
      /\n\s+at .+:\d+:\d+|\/(node_modules|executor-platform|sdk)\/\S+\.[jt]s/.test(text) &&
      report.leaks.length < 50
    ) {
      report.leaks.push(`${action}: ${text.slice(0, 300)}`);
    }
  };
  const grpcAnswer = (action: string, error: grpc.ServiceError | null) => {
    if (error === null) answer(action, "OK", true);
    else
      answer(
        action,
        grpc.status[error.code] ?? String(error.code),
        error.code !== grpc.status.UNAVAILABLE && error.code !== grpc.status.DEADLINE_EXCEEDED,
        error.details,
      );
  };
  const realId = () => {
    const ids = options.realIds();
    return ids.length === 0 ? "no-real-id-yet" : prng.pick(ids);
  };
  const junkString = (max: number) => {
    const kinds = [
      () => "",
      () => " ",
      () => "../../etc/passwd",
      () => "x".repeat(prng.int(65, 300)),
      () => "\u0000\uffff\ud800",
      () => "Ω≈ç√∫".repeat(prng.int(1, 20)),
      () => randomBytes(prng.int(1, max)).toString("latin1"),
      () => "J",
      () => "T{",
      () => "J[1,2",
      () => 'T[{"$nt":"zz"}]',
    ];
    return prng.pick(kinds)();
  };
  const badInstance = (): NewInstance => {
    const module = prng.pick([
      "",
      "relative/tasks.ts",
      "/etc/passwd",
      "/no/such/module.ts",
      `${options.appRoot}/../outside.ts`,
      junkString(40),
    ]);
    return NewInstance.create({
      id: prng.chance(0.3) ? realId() : prng.chance(0.5) ? junkString(80) : `rogue${prng.int(0, 1e9)}`,
      taskName: prng.chance(0.5) ? junkString(30) : "chaosShort",
      args: prng.chance(0.5) ? junkString(50) : "J[1]",
      createdAtMs: prng.pick([0, -1, Number.MAX_SAFE_INTEGER, Date.now()]),
      module,
    });
  };

  /** Bad input on the private framed socket: answered with a refusal or a close, never a message. */
  const framedJunk = async (path: string) => {
    const name = "framed";
    const id = realId();
    const message = (m: Parameters<typeof WorkloadMessage.create>[0]) =>
      frame(Buffer.from(WorkloadMessage.encode(WorkloadMessage.create(m)).finish()));
    const hello = (token: string, instanceId: string) =>
      message({ kind: { $case: "hello", value: { workloadToken: token, instanceId, pid: 1 } } });
    const bytes = prng.pick<() => Buffer>([
      () => randomBytes(prng.int(1, 4096)),
      () => Buffer.concat([Buffer.from([prng.int(2, 255)]), lengthPrefix(8), randomBytes(8)]),
      () => Buffer.concat([Buffer.from([0]), lengthPrefix(options.maxMessageBytes + prng.int(1, 1 << 20))]),
      () => mutate(hello(junkString(64), id), prng),
      () => hello(junkString(64), id),
      () => hello("", ""),
      () =>
        message({
          kind: {
            $case: "finished",
            value: { instanceId: id, status: Status.STATUS_COMPLETED, result: "J1" },
          },
        }),
      () =>
        Buffer.concat([
          hello(junkString(64), id),
          message({ kind: { $case: "output", value: { instanceId: id, output: "not the codec" } } }),
        ]),
      () => frame(randomBytes(prng.int(0, 256))),
      () => Buffer.concat([Buffer.from([1]), lengthPrefix(4), Buffer.from("null")]),
    ])();
    await new Promise<void>((resolve) => {
      const socket = netConnect(path);
      const reader = new FrameReader(64 * 1024 * 1024);
      let said = false;
      let connected = false;
      socket.once("connect", () => {
        connected = true;
      });
      const finish = (outcome: string, text = "") => {
        if (said) return;
        said = true;
        clearTimeout(timer);
        answer(name, outcome, connected, text);
        socket.destroy();
        resolve();
      };
      const timer = setTimeout(() => finish("no answer within 1 s (socket left open)"), 1_000);
      socket.on("data", (chunk: Buffer) => {
        let frames: Frame[];
        try {
          frames = reader.push(chunk);
        } catch (error) {
          return finish(`unreadable answer: ${(error as Error).message}`);
        }
        for (const { kind, payload } of frames) {
          if (kind !== FRAME_REFUSAL) {
            report.breaches.push(`the daemon sent a rogue framed workload a message (instance ${id})`);
            continue;
          }
          const refusal = decodeRefusal(payload);
          finish(grpcStatusName(String(refusal.code)), refusal.message);
        }
      });
      socket.on("error", (error: NodeJS.ErrnoException) => finish(`socket ${error.code ?? "error"}`));
      socket.on("close", () => finish("closed"));
      socket.write(bytes);
      if (prng.chance(0.5)) socket.end();
    });
  };

  const unary = <Res>(
    action: string,
    start: (cb: (error: grpc.ServiceError | null, response: Res) => void) => void,
  ) =>
    new Promise<Res | undefined>((resolve) => {
      start((error, response) => {
        grpcAnswer(action, error);
        resolve(error === null ? response : undefined);
      });
    });

  const actions: Record<string, () => Promise<void>> = {
    "submit malformed instances": async () => {
      const instances = Array.from({ length: prng.int(1, 20) }, badInstance);
      const response = await unary<{ results: Array<{ outcome?: { $case: string } }> }>(
        "submit malformed",
        (cb) => tasks.submit(SubmitRequest.create({ instances }), metadata(), deadline(), cb),
      );
      response?.results.forEach((result, i) => {
        if (result.outcome?.$case === "instance")
          report.breaches.push(
            `submit accepted a malformed instance: ${JSON.stringify(instances[i]).slice(0, 200)}`,
          );
      });
    },
    "submit a real id from another deployment": async () => {
      const id = realId();
      const response = await unary<{ results: Array<{ outcome?: { $case: string } }> }>(
        "submit stolen id",
        (cb) =>
          tasks.submit(
            SubmitRequest.create({
              instances: [
                { id, taskName: "chaosShort", args: "J[1]", createdAtMs: 0, module: "/etc/passwd" },
              ],
            }),
            metadata(),
            deadline(),
            cb,
          ),
      );
      if (response?.results[0]?.outcome?.$case === "instance")
        report.breaches.push(`submit of real id ${id} from the rogue deployment returned an instance`);
    },
    "get and stop real ids from another deployment": async () => {
      const id = realId();
      const got = await unary<{ instance?: unknown }>("get foreign", (cb) =>
        tasks.getInstance(GetInstanceRequest.create({ id }), metadata(), deadline(), cb),
      );
      if (got?.instance !== undefined) report.breaches.push(`the rogue deployment could read instance ${id}`);
      const stopped = await unary<{ found: boolean }>("stop foreign", (cb) =>
        tasks.stopInstance(StopInstanceRequest.create({ id }), metadata(), deadline(), cb),
      );
      if (stopped?.found === true) report.breaches.push(`the rogue deployment could stop instance ${id}`);
    },
    "list with bad filters": async () => {
      const statuses = Array.from(
        { length: prng.int(0, 5) },
        () => prng.pick([0, 1, 99, -1, 2 ** 31 - 1]) as Status,
      );
      await unary("list bad", (cb) =>
        tasks.listInstances(
          ListInstancesRequest.create({
            task: junkString(20),
            statuses,
            limit: prng.pick([0, 1, 2 ** 32 - 1, 1_000_000]),
            cursor: prng.chance(0.5) ? realId() : junkString(30),
          }),
          metadata(),
          deadline(),
          cb,
        ),
      );
    },
    "watch random ids": async () => {
      const ids = Array.from({ length: prng.int(1, 5000) }, () =>
        prng.chance(0.01) ? realId() : junkString(20),
      );
      await new Promise<void>((resolve) => {
        const call = tasks.watchInstances(
          WatchInstancesRequest.create({
            ids,
            afterSequence: prng.pick([0, 2 ** 53 - 1, 1e9]),
            fromNow: prng.chance(0.5),
          }),
          metadata(),
        );
        let saw = 0;
        let heard = false;
        // grpc-js may end the stream and then report its error: one answer per call.
        let said = false;
        const timer = setTimeout(() => call.cancel(), prng.int(50, 1000));
        call.on("metadata", () => {
          heard = true;
        });
        call.on("data", (changes: { instances: unknown[] }) => {
          heard = true;
          saw += changes.instances.length;
          if (saw > 0) report.breaches.push(`a rogue watch saw ${saw} instance(s) of another deployment`);
        });
        call.on("error", (error: grpc.ServiceError) => {
          clearTimeout(timer);
          if (!said) {
            if (error.code !== grpc.status.CANCELLED) grpcAnswer("watch random", error);
            else answer("watch random", "cancelled by the rogue", heard);
          }
          said = true;
          resolve();
        });
        call.on("status", (status: grpc.StatusObject) => {
          clearTimeout(timer);
          if (status.code === grpc.status.OK && !said) answer("watch random", "ended by the daemon", true);
          if (status.code === grpc.status.OK) said = true;
          resolve();
        });
        call.on("end", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    "submit an oversized message": async () => {
      const bytes = options.maxMessageBytes + prng.int(1, 4 * 1024 * 1024);
      await unary("submit oversized", (cb) =>
        tasks.submit(
          SubmitRequest.create({
            instances: [
              {
                id: `rogue${prng.int(0, 1e9)}`,
                taskName: "chaosShort",
                args: `J["${"x".repeat(bytes)}"]`,
                createdAtMs: 0,
                module: "/etc/passwd",
              },
            ],
          }),
          metadata(),
          deadline(),
          cb,
        ),
      );
    },
    "oversized metadata": async () => {
      const m = metadata();
      m.set("x-rogue", "y".repeat(prng.int(8 * 1024, 256 * 1024)));
      await unary("oversized metadata", (cb) =>
        tasks.getInstance(GetInstanceRequest.create({ id: realId() }), m, deadline(), cb),
      );
    },
    "workload: messages without hello, bad tokens, bad values": async () => {
      const call = workloads.connect(metadata());
      const id = realId();
      const script = prng.pick<Array<NonNullable<Parameters<typeof WorkloadMessage.create>[0]>>>([
        [{ kind: { $case: "progress", value: { instanceId: id, value: 0.5 } } }],
        [{ kind: { $case: "hello", value: { workloadToken: junkString(64), instanceId: id, pid: 1 } } }],
        [{ kind: { $case: "hello", value: { workloadToken: "", instanceId: "", pid: -1 } } }],
        [{ kind: undefined }],
        [
          { kind: { $case: "hello", value: { workloadToken: junkString(64), instanceId: "", pid: 0 } } },
          { kind: { $case: "hello", value: { workloadToken: junkString(64), instanceId: id, pid: 0 } } },
        ],
        [
          {
            kind: {
              $case: "finished",
              value: { instanceId: id, status: Status.STATUS_COMPLETED, result: "J1", error: undefined },
            },
          },
        ],
        [{ kind: { $case: "output", value: { instanceId: id, output: "not the codec" } } }],
        [
          {
            kind: {
              $case: "hello",
              value: { workloadToken: "t".repeat(options.maxMessageBytes + 1024), instanceId: id, pid: 0 },
            },
          },
        ],
      ]);
      await new Promise<void>((resolve) => {
        let heard = false;
        // grpc-js may end the stream and then report its error: one answer per call.
        let said = false;
        const timer = setTimeout(() => {
          said = true;
          answer("workload", "no answer within 1 s (stream left open)", heard);
          call.cancel();
        }, 1_000);
        call.on("metadata", () => {
          heard = true;
        });
        call.on("data", () =>
          report.breaches.push(`the daemon sent a rogue workload a message (instance ${id})`),
        );
        call.on("error", (error: grpc.ServiceError) => {
          clearTimeout(timer);
          if (!said && error.code !== grpc.status.CANCELLED) grpcAnswer("workload", error);
          said = true;
          resolve();
        });
        call.on("status", (status: grpc.StatusObject) => {
          clearTimeout(timer);
          if (status.code === grpc.status.OK && !said) answer("workload", "ended by the daemon", true);
          if (status.code === grpc.status.OK) said = true;
          resolve();
        });
        call.on("end", () => {
          clearTimeout(timer);
          resolve();
        });
        for (const message of script) call.write(WorkloadMessage.create(message));
        if (prng.chance(0.5)) call.end();
      });
    },
    ...(options.framesSocket === undefined
      ? {}
      : {
          "framed workload socket: junk, bad frames, bad hellos": () =>
            framedJunk(options.framesSocket as string),
        }),
    "http2: random or mutated bodies": async () => {
      const path = prng.chance(0.7) ? prng.pick(TASK_PATHS) : WORKLOAD_PATH;
      const kind = prng.int(0, 6);
      let body: Buffer;
      if (kind === 0) body = randomBytes(prng.int(0, 4096));
      else if (kind === 1) body = frame(mutate(validMessage(path, realId()), prng));
      else if (kind === 2)
        body = Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xff]), randomBytes(prng.int(0, 64))]);
      else if (kind === 3) body = Buffer.concat([Buffer.from([1]), lengthPrefix(32), randomBytes(32)]);
      else if (kind === 4)
        body = Buffer.concat([Buffer.from([0]), lengthPrefix(1000), randomBytes(prng.int(0, 999))]);
      else if (kind === 5)
        body = Buffer.concat([frame(validMessage(path, realId())), randomBytes(prng.int(1, 4))]);
      else body = frame(randomBytes(options.maxMessageBytes + prng.int(1, 1024 * 1024)));
      await http2Request(`http2 body#${kind}`, path, body, { "content-type": "application/grpc" });
    },
    "http2: wrong paths and headers": async () => {
      const variants: Array<[string, Record<string, string>]> = [
        ["/numerous.tasks.v1.TaskService/Nope", { "content-type": "application/grpc" }],
        ["/", { "content-type": "application/grpc" }],
        [prng.pick(TASK_PATHS), { "content-type": "text/plain" }],
        [prng.pick(TASK_PATHS), { "content-type": "application/grpc", "grpc-encoding": "br" }],
        [prng.pick(TASK_PATHS), { "content-type": "application/grpc", "grpc-timeout": "bogus" }],
        [
          WORKLOAD_PATH,
          {
            "content-type": "application/grpc+proto",
            authorization: junkString(30).replace(/[^\x20-\x7e]/g, "?"),
          },
        ],
      ];
      const [path, headers] = prng.pick(variants);
      await http2Request("http2 headers", path, frame(validMessage(path, realId())), headers);
    },
    "http2: many streams, then a reset session": async () => {
      const session = await http2Session();
      if (session === undefined) {
        answer("http2 many streams", "could not connect", false);
        return;
      }
      const streams = prng.int(10, 300);
      for (let i = 0; i < streams; i++) {
        try {
          const req = session.request({
            ":method": "POST",
            ":path": prng.pick(TASK_PATHS),
            "content-type": "application/grpc",
            te: "trailers",
            "x-numerous-deployment": ROGUE_DEPLOYMENT,
          });
          req.on("error", () => {});
          req.write(frame(validMessage(WORKLOAD_PATH, realId())).subarray(0, prng.int(0, 8)));
        } catch {
          break;
        }
      }
      await sleep(prng.int(0, 300));
      const heard = settingsArrived.has(session);
      session.destroy();
      answer("http2 many streams", "session destroyed by the rogue", heard);
    },
    "tcp: random bytes, garbage frames, a stalled preface": async () => {
      const socket = await tcpSocket();
      if (socket === undefined) return;
      const kind = prng.int(0, 3);
      if (kind === 0) socket.write(randomBytes(prng.int(1, 65536)));
      else if (kind === 1) socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      else if (kind === 2)
        socket.write(
          Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), randomBytes(prng.int(9, 4096))]),
        );
      else socket.write("PRI * HTTP/2.0\r\n");
      const closed = await Promise.race([
        new Promise<string>((resolve) => socket.once("close", () => resolve("closed by the daemon"))),
        sleep(prng.int(100, 2000)).then(() => "still open"),
      ]);
      answer(`tcp#${kind}`, closed, true);
      socket.destroy();
    },
  };

  const connectOptions = () =>
    options.address.startsWith("unix:")
      ? { path: options.address.slice("unix:".length) }
      : {
          host: options.address.slice(0, options.address.lastIndexOf(":")),
          port: Number(options.address.slice(options.address.lastIndexOf(":") + 1)),
        };

  function tcpSocket(): Promise<Socket | undefined> {
    return new Promise((resolve) => {
      const socket = netConnect(connectOptions());
      socket.once("connect", () => resolve(socket));
      socket.once("error", () => {
        answer("tcp", "connection refused", false);
        resolve(undefined);
      });
    });
  }

  function http2Session(): Promise<ClientHttp2Session | undefined> {
    return new Promise((resolve) => {
      const session = http2Connect("http://rogue.invalid", {
        createConnection: () => netConnect(connectOptions()),
      });
      session.once("connect", () => resolve(session));
      // The daemon's HTTP/2 layer speaks first: its settings prove the call got there.
      session.once("remoteSettings", () => settingsArrived.add(session));
      session.on("error", () => {
        resolve(undefined);
      });
      setTimeout(() => resolve(undefined), TIMEOUT_MS).unref();
    });
  }

  async function http2Request(
    action: string,
    path: string,
    body: Buffer,
    headers: Record<string, string>,
  ): Promise<void> {
    const session = await http2Session();
    if (session === undefined) {
      answer(action, "could not connect", false);
      return;
    }
    await new Promise<void>((resolve) => {
      let status: string | undefined;
      let message = "";
      let settled = false;
      const done = (outcome: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        answer(
          action,
          status === undefined ? outcome : `grpc-status ${grpcStatusName(status)}`,
          status !== undefined || settingsArrived.has(session),
          message,
        );
        session.destroy();
        resolve();
      };
      const timer = setTimeout(() => done("no answer within 5 s"), TIMEOUT_MS);
      // Its own deployment here too: a well-formed StopInstance must not reach a real instance.
      const req = session.request({
        ":method": "POST",
        ":path": path,
        te: "trailers",
        "x-numerous-deployment": ROGUE_DEPLOYMENT,
        ...headers,
      });
      const take = (h: Record<string, unknown>) => {
        if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
        if (h["grpc-message"] !== undefined) message = decodeURIComponent(String(h["grpc-message"]));
      };
      req.on("response", (h) => take(h));
      req.on("trailers", (h) => take(h));
      req.on("data", () => {});
      req.on("end", () => done("ended without a status"));
      req.on("error", (error: Error) => done(`stream error ${error.message.slice(0, 40)}`));
      req.on("close", () => done(`closed (code ${req.rstCode})`));
      req.end(body);
    });
  }

  return {
    report,
    actionNames: Object.keys(actions),
    async act(chosen) {
      const name = chosen ?? prng.pick(Object.keys(actions));
      count(report.actions, name);
      try {
        await (actions[name] as () => Promise<void>)();
      } catch (error) {
        answer(name, `threw ${(error as Error).name}`, false);
      }
    },
    close() {
      tasks.close();
      workloads.close();
    },
  };
}

function validMessage(path: string, id: string): Buffer {
  if (path === WORKLOAD_PATH) {
    const hello = WorkloadMessage.create({
      kind: { $case: "hello", value: { workloadToken: "nope", instanceId: id, pid: 1 } },
    });
    return Buffer.from(WorkloadMessage.encode(hello).finish());
  }
  if (path.endsWith("/Submit")) {
    const request = SubmitRequest.create({
      instances: [{ id, taskName: "chaosShort", args: "J[1]", createdAtMs: 0, module: "/etc/passwd" }],
    });
    return Buffer.from(SubmitRequest.encode(request).finish());
  }
  if (path.endsWith("/ListInstances"))
    return Buffer.from(ListInstancesRequest.encode(ListInstancesRequest.create({ limit: 5 })).finish());
  if (path.endsWith("/WatchInstances")) {
    return Buffer.from(
      WatchInstancesRequest.encode(WatchInstancesRequest.create({ ids: [id], fromNow: true })).finish(),
    );
  }
  return Buffer.from(GetInstanceRequest.encode(GetInstanceRequest.create({ id })).finish());
}

/** Flips, drops or inserts a few random bytes. */
function mutate(message: Buffer, prng: Prng): Buffer {
  const bytes = [...message];
  for (let n = prng.int(1, 6); n > 0; n--) {
    const at = prng.int(0, Math.max(0, bytes.length - 1));
    const how = prng.int(0, 2);
    if (how === 0 && bytes.length > 0) bytes[at] = prng.int(0, 255);
    else if (how === 1) bytes.splice(at, 1);
    else bytes.splice(at, 0, prng.int(0, 255));
  }
  return Buffer.from(bytes);
}

function lengthPrefix(length: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(length);
  return b;
}

function frame(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0]), lengthPrefix(message.length), message]);
}

function grpcStatusName(code: string): string {
  return grpc.status[Number(code)] ?? code;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
