/**
 * Schedules: cron expressions (with a time zone) or fixed intervals, each occurrence one
 * instance, exactly once across restarts and every daemon of a cluster.
 *
 *   npx tsx examples/20-schedule.ts                                  # local: fires in this process
 *   NUMEROUS_EXECUTOR=platform npx tsx examples/20-schedule.ts       # a daemon keeps and fires it
 */
import { setTimeout as sleep } from "node:timers/promises";
import { deleteSchedule, listSchedules, pauseSchedule, upsertSchedule } from "numerous-tasks";
import { report } from "./schedule-tasks.js";

// Idempotent by name: call it at every app start; a changed definition updates the schedule.
await upsertSchedule({
  name: "nightly-report",
  task: report,
  args: ["daily"],
  cron: "0 3 * * *", // five fields, or six with seconds first
  timezone: "Europe/Copenhagen", // daylight-saving changes neither skip nor double a run
  overlap: "skip", // no new run while the last one still runs
  catchUp: "latest", // after downtime: the most recent missed run, once
});

// A fixed interval, at least one second.
const heartbeat = await upsertSchedule({
  name: "heartbeat",
  task: report,
  args: ["heartbeat"],
  every: 1_000,
});
console.log(`heartbeat fires next at ${heartbeat.nextFireAt?.toISOString()}`);

// Wait until it has fired twice.
for (;;) {
  const runs = await report.listInstances();
  if (runs.filter((run) => run.isDone()).length >= 2) break;
  await sleep(100);
}
for (const schedule of await listSchedules()) {
  console.log(
    `${schedule.name}: ${schedule.cron ?? `every ${schedule.every} ms`}, next ${schedule.nextFireAt?.toISOString()}, last instance ${schedule.lastInstanceId ?? "none"}`,
  );
}
const last = (await report.listInstances()).find((run) => run.isDone());
console.log(`one run said: ${await last?.wait()}`);

await pauseSchedule("heartbeat"); // fires nothing until resumeSchedule("heartbeat")
await deleteSchedule("heartbeat");
await deleteSchedule("nightly-report");
console.log("schedules deleted; their instances are kept");
