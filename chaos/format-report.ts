/** The printed report of a chaos run. */
import type { ChaosResult } from "./run-chaos.js";
import type { Percentiles } from "./stats.js";

type ReportInput = Omit<ChaosResult, "table">;

export function formatReport(r: ReportInput): string {
  const out: string[] = [];
  const row = (label: string, ...cells: Array<string | number | undefined>) =>
    out.push(`  ${label.padEnd(66)}${cells.map((c) => String(c ?? "-").padStart(11)).join("")}`);
  const head = (title: string, ...cols: string[]) => {
    out.push("");
    out.push(`${title.padEnd(68)}${cols.map((c) => c.padStart(11)).join("")}`);
  };

  out.push(
    `numerous-tasks chaos run: seed ${r.seed}, ${r.seconds} s of load and faults, ${(r.durationMs / 1000).toFixed(0)} s in all`,
  );
  out.push(
    `  ${Object.entries(r.settings)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
  );
  const cluster = r.settings.cluster === undefined ? "" : ` --cluster ${r.settings.cluster}`;
  out.push(
    `  replay: npm run chaos -- --seconds ${r.seconds} --seed ${r.seed}${cluster}${r.settings.mode === "pool" ? " --mode pool" : ""}`,
  );

  head("instances submitted", "count");
  row("all", r.submitted.total);
  for (const [kind, n] of Object.entries(r.submitted.byKind)) row(kind, n);

  head("faults injected", "count");
  for (const [kind, n] of Object.entries(r.faults)) row(kind, n);

  const statuses = ["completed", "failed", "cancelled"];
  const others = [...new Set(Object.keys(r.outcomes).filter((s) => !statuses.includes(s)))];
  head("outcomes (the daemon's final status)", ...statuses, ...others.map((s) => s.slice(0, 10)));
  for (const [kind, counts] of Object.entries(r.outcomesByKind)) {
    if (Object.keys(counts).length === 0) continue;
    row(kind, ...[...statuses, ...others].map((s) => counts[s] ?? 0));
  }
  row("all", ...[...statuses, ...others].map((s) => r.outcomes[s] ?? 0));
  for (const s of others) out.push(`    (${s})`);

  // "checked": the cases each check looked at and could have failed on; an invariant that
  // checked none is a violation of its own.
  head("invariants", "checked", "violated", "unchecked");
  for (const inv of r.invariants) {
    const unchecked = Object.values(inv.notChecked).reduce((a, b) => a + b, 0);
    row(
      inv.name.length > 66 ? `${inv.name.slice(0, 63)}...` : inv.name,
      inv.checked,
      inv.violations,
      unchecked,
    );
    for (const [why, n] of Object.entries(inv.notChecked)) out.push(`    (${n} unchecked: ${why})`);
  }

  head("latency under faults (ms)", "p50", "p99", "max", "n");
  const lat = (label: string, p: Percentiles) => row(label, p.p50, p.p99, p.max, p.count);
  lat("short task: call -> caller's handle completed", r.latency.shortCompletedMs);
  lat("stop of a running task: acknowledged -> caller's handle final", r.latency.stopToEndMs);
  row(`settle: end of faults -> no instance pending or running`, r.settleMs);

  const m = r.memory;
  head(
    "daemon memory and files, each generation at rest at its start and end",
    "start",
    "end",
    "bound",
    "peak",
  );
  for (const g of m.generations) {
    const { start, end } = g;
    const rssStart = start?.rssBytes;
    const fdsStart = start?.fds;
    const who = g.daemon === undefined ? "" : `daemon ${g.daemon} `;
    row(`${who}generation ${g.generation} (pid ${g.pid}), ${g.instances} instance(s) in between`);
    row(
      "  RSS (MiB)",
      mib(rssStart),
      mib(end?.rssBytes),
      rssStart === undefined ? undefined : mib(rssStart + m.rssHeadroomBytes),
      mib(g.rssPeakBytes),
    );
    row(
      "  descriptors of its own (peak: all open)",
      fdsStart,
      end?.fds,
      fdsStart === undefined ? undefined : fdsStart + m.fdsHeadroom,
      g.fdsPeak,
    );
    if (g.instances > 0)
      out.push(
        `    a leak above ${kib(m.rssHeadroomBytes / g.instances)} KiB or ${(m.fdsHeadroom / g.instances).toFixed(2)} descriptors per instance would cross its bounds`,
      );
  }

  head(
    "watchers (breaks: streams reopened, or connections cut and restarts under a watch)",
    "watches",
    "breaks",
  );
  for (const [kind, w] of Object.entries(r.watchers)) row(kind, w.watches, w.breaks);

  if (r.findings.length > 0) {
    out.push("");
    out.push("findings (no promise broken, but worth knowing)");
    for (const f of r.findings) out.push(`  - ${f}`);
  }

  out.push("");
  out.push(`violations: ${r.violations.length}`);
  // A few of each invariant's, so one that broke everywhere does not hide the others.
  for (const inv of r.invariants) {
    const mine = r.violations.filter((v) => v.invariant === inv.name);
    for (const v of mine.slice(0, 12)) {
      out.push(`  - [${v.invariant}] ${v.detail}`);
      for (const story of v.story) out.push(`      story: ${story}`);
      for (const line of v.logLines.slice(0, 4)) out.push(`      ${line.slice(0, 300)}`);
    }
    if (mine.length > 12) out.push(`  ... and ${mine.length - 12} more of [${inv.name}]`);
  }
  if (r.runDir !== undefined) out.push(`run directory (daemon logs, data, heartbeats): ${r.runDir}`);
  return out.join("\n");
}

function mib(bytes: number | undefined): string {
  return bytes === undefined ? "unread" : (bytes / 2 ** 20).toFixed(1);
}

function kib(bytes: number): string {
  return Math.round(bytes / 1024).toLocaleString("en");
}
