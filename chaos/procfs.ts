/**
 * What the harness reads about processes from Linux's /proc: a daemon's resident memory and
 * open file descriptors, and the workload processes that serve a given daemon address (found
 * by their environment, so the ones a killed daemon left behind are found too).
 */
import { readFileSync, readdirSync, readlinkSync } from "node:fs";

/** VmRSS in bytes, or undefined when the process is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

/** The number of open file descriptors, or undefined when the process is gone. */
export function openFds(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/** A workload process of the daemon at one address. */
export interface WorkloadProcess {
  readonly pid: number;
  readonly ppid: number;
  /** Process mode: the instance it was started for. Pool mode: undefined. */
  readonly instanceId: string | undefined;
}

/**
 * Every live `numerous-executor run` process whose NUMEROUS_EXECUTOR_ADDRESS `isOurs` accepts
 * (the daemon's address, or a socket of its own in its data directory).
 */
export function workloadProcesses(isOurs: (address: string) => boolean): WorkloadProcess[] {
  const found: WorkloadProcess[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      if (cmdline.at(-2) !== "run" && cmdline.at(-1) !== "run") continue;
      const env = new Map(
        readFileSync(`/proc/${name}/environ`, "utf8")
          .split("\0")
          .map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)] as const),
      );
      if (!isOurs(env.get("NUMEROUS_EXECUTOR_ADDRESS") ?? "") || !env.has("NUMEROUS_WORKLOAD_TOKEN"))
        continue;
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (state[0] === "Z") continue;
      found.push({
        pid: Number(name),
        ppid: Number(state[1]),
        instanceId: env.get("NUMEROUS_TASK_INSTANCE_ID") || undefined,
      });
    } catch {
      // Gone while we looked, or not ours to read.
    }
  }
  return found;
}

const TCP_STATES: Readonly<Record<string, string>> = {
  "01": "ESTABLISHED",
  "02": "SYN_SENT",
  "03": "SYN_RECV",
  "04": "FIN_WAIT1",
  "05": "FIN_WAIT2",
  "06": "TIME_WAIT",
  "07": "CLOSE",
  "08": "CLOSE_WAIT",
  "09": "LAST_ACK",
  "0A": "LISTEN",
  "0B": "CLOSING",
};

/**
 * What each open file descriptor of a process is, in words: a path, "pipe", or for a TCP
 * socket its ports, state and, for a peer on this machine, the process at the other end
 * ("tcp 127.0.0.1:4242 <- 127.0.0.1:51234 ESTABLISHED (peer: pid 77 node chaos/run.ts)").
 */
export function describeFds(pid: number, withPeers = false): string[] {
  return readFds(pid, withPeers ? allPids() : undefined) ?? [];
}

/** What a process has open, in the terms a leak check needs. */
export interface FdCensus {
  /** Every open descriptor. */
  readonly total: number;
  /** TCP connections, ESTABLISHED, whose other end a live process holds open: a client's, not the daemon's to close. */
  readonly live: number;
  /** TCP sockets winding down (CLOSE_WAIT and the like), or connected to no process: closed by the client, not yet by the daemon. */
  readonly lingering: number;
  /** Every descriptor but the live connections, described as {@link describeFds} does. */
  readonly counted: string[];
}

/**
 * The open descriptors of `pid`, with its live connections to `clients` (process ids) told
 * apart from what it holds on its own; undefined when `/proc/<pid>/fd` cannot be read. When the
 * TCP tables cannot be read, every socket counts as the process's own: the census can then
 * only say too much, never too little. (Only the clients' descriptors are searched for the
 * other ends: searching every process takes a blocking fifth of a second on a busy machine.)
 */
export function fdCensus(pid: number, clients: readonly number[]): FdCensus | undefined {
  const all = readFds(pid, clients);
  if (all === undefined) return undefined;
  const isLive = (fd: string) => /^tcp .* ESTABLISHED \(peer: pid \d+/.test(fd);
  const counted = all.filter((fd) => !isLive(fd));
  const lingering = counted.filter((fd) => fd.startsWith("tcp ") && !/ LISTEN$/.test(fd)).length;
  return { total: all.length, live: all.length - counted.length, lingering, counted };
}

/** `peersAmong`: the processes to look for the other end of each connection in; none when undefined. */
function readFds(pid: number, peersAmong: readonly (string | number)[] | undefined): string[] | undefined {
  const sockets = new Map<string, { local: string; remote: string; state: string }>();
  const byEnds = new Map<string, string>();
  for (const table of ["tcp", "tcp6"]) {
    let text = "";
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const entry = {
        local: endpoint(f[1] as string),
        remote: endpoint(f[2] as string),
        state: TCP_STATES[f[3] as string] ?? (f[3] as string),
      };
      sockets.set(f[9] as string, entry);
      byEnds.set(`${entry.local}|${entry.remote}`, f[9] as string);
    }
  }
  const withPeers = peersAmong !== undefined;
  const owners = socketOwners(peersAmong ?? []);
  const out: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  for (const fd of names) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined) {
      const socket = sockets.get(inode);
      if (socket === undefined) {
        out.push("socket (unix or closed)");
        continue;
      }
      let text = `tcp ${socket.local} <- ${socket.remote} ${socket.state}`;
      const peerInode = byEnds.get(`${socket.remote}|${socket.local}`);
      const peer = peerInode === undefined ? undefined : owners.get(peerInode);
      if (withPeers && socket.state !== "LISTEN")
        text += peer === undefined ? " (peer: no process)" : ` (peer: pid ${peer} ${commandOf(peer)})`;
      out.push(text);
    } else if (target.startsWith("pipe:")) out.push("pipe");
    else out.push(target.replace(/\[\d+\]$/, ""));
  }
  return out;
}

function allPids(): string[] {
  return readdirSync("/proc").filter((name) => /^\d+$/.test(name));
}

function socketOwners(pids: readonly (string | number)[]): Map<string, number> {
  const owners = new Map<string, number>();
  for (const name of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${name}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${name}/fd/${fd}`))?.[1];
        if (inode !== undefined) owners.set(inode, Number(name));
      } catch {
        // Closed meanwhile.
      }
    }
  }
  return owners;
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .filter(Boolean)
      .slice(-3)
      .join(" ")
      .slice(0, 120);
  } catch {
    return "(gone)";
  }
}

function endpoint(hex: string): string {
  const [addr, port] = hex.split(":") as [string, string];
  const ip =
    addr.length === 8
      ? (addr.match(/../g) as string[])
          .reverse()
          .map((b) => Number.parseInt(b, 16))
          .join(".")
      : `[${addr}]`;
  return `${ip}:${Number.parseInt(port, 16)}`;
}

/** The entries of `after` not matched by one of `before`, counted: "2 x pipe". */
export function fdDifference(before: readonly string[], after: readonly string[]): string[] {
  const bare = (item: string) => item.replace(/ \(peer: .*\)$/, "");
  const left = before.map(bare);
  const extra = new Map<string, number>();
  for (const item of after) {
    const index = left.indexOf(bare(item));
    if (index >= 0) left.splice(index, 1);
    else extra.set(item, (extra.get(item) ?? 0) + 1);
  }
  return [...extra].map(([item, n]) => `${n} x ${item}`);
}
