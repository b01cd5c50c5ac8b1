import { Cron } from "croner";

/** When a schedule fires: a cron expression (in a time zone) or a fixed interval from an anchor. */
export interface ScheduleTiming {
  /** Five fields, or six with seconds first. */
  readonly cron?: string | undefined;
  /** IANA time zone of the cron expression; default UTC. */
  readonly timezone?: string | undefined;
  /** Milliseconds between occurrences, counted from `anchorAt`. */
  readonly everyMs?: number | undefined;
  /** Epoch ms an interval schedule counts from (when it was created or its timing last changed). */
  readonly anchorAt: number;
}

/** The shortest interval a schedule may have. */
export const MIN_INTERVAL_MS = 1_000;
/** `catchUp: "all"` runs at most this many missed occurrences. */
export const MAX_CATCH_UP = 100;

/**
 * Checks a timing; returns the problem as text naming what is wrong, or undefined.
 * Cron expressions are parsed by croner (five fields, or six with seconds), never by hand.
 */
export function timingProblem(timing: Omit<ScheduleTiming, "anchorAt">): string | undefined {
  const { cron, timezone, everyMs } = timing;
  if ((cron === undefined) === (everyMs === undefined)) return "schedule: give cron or every, one of them";
  if (timezone !== undefined) {
    if (typeof timezone !== "string" || timezone.trim() === "")
      return "timezone: must be an IANA time zone name";
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: timezone });
    } catch {
      return `timezone: unknown time zone ${JSON.stringify(timezone)} (use an IANA name such as "Europe/Copenhagen")`;
    }
    if (cron === undefined) return "timezone: only a cron schedule has a time zone";
  }
  if (everyMs !== undefined) {
    if (typeof everyMs !== "number" || !Number.isFinite(everyMs) || everyMs < MIN_INTERVAL_MS) {
      return `every: must be at least ${MIN_INTERVAL_MS} ms, got ${String(everyMs)}`;
    }
    return undefined;
  }
  if (typeof cron !== "string" || cron.trim() === "")
    return 'cron: must be a cron expression such as "0 3 * * *"';
  const fields = cron.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6) {
    return `cron: ${JSON.stringify(cron)} has ${fields} fields; give five (minute hour day month weekday) or six (seconds first)`;
  }
  try {
    cronOf({ cron, timezone, anchorAt: 0 }).nextRun(new Date());
  } catch (error) {
    return `cron: ${JSON.stringify(cron)} is not a valid cron expression: ${(error as Error).message}`;
  }
  return undefined;
}

const crons = new Map<string, Cron>();

function cronOf(timing: ScheduleTiming): Cron {
  const key = `${timing.cron}\u0000${timing.timezone ?? ""}`;
  let cron = crons.get(key);
  if (cron === undefined) {
    cron = new Cron(timing.cron as string, { timezone: timing.timezone ?? "UTC", paused: true });
    if (crons.size > 10_000) crons.clear();
    crons.set(key, cron);
  }
  return cron;
}

/**
 * The first occurrence strictly after `after` (epoch ms), or undefined when there is none. Cron
 * occurrences are instants of the time zone's calendar: at a daylight-saving change a wall-clock
 * time that does not exist fires once at the next valid time, and one that occurs twice fires once.
 */
export function nextOccurrence(timing: ScheduleTiming, after: number): number | undefined {
  if (timing.everyMs !== undefined) {
    const every = timing.everyMs;
    if (after < timing.anchorAt) return timing.anchorAt + every;
    return timing.anchorAt + (Math.floor((after - timing.anchorAt) / every) + 1) * every;
  }
  const next = cronOf(timing).nextRun(new Date(after));
  return next === null ? undefined : next.getTime();
}

/** Occurrences in (after, until], at most `max` of them, the latest ones kept when there are more. */
export function occurrencesBetween(
  timing: ScheduleTiming,
  after: number,
  until: number,
  max: number,
): number[] {
  const found: number[] = [];
  if (timing.everyMs !== undefined) {
    // Straight to the last `max` of them: a long downtime of a one-second schedule is cheap.
    const last = nextOccurrence(timing, until);
    const end = last === undefined ? until : last - timing.everyMs;
    for (let at = end; at > after && found.length < max; at -= timing.everyMs) found.unshift(at);
    return found;
  }
  for (
    let at = nextOccurrence(timing, after);
    at !== undefined && at <= until;
    at = nextOccurrence(timing, at)
  ) {
    found.push(at);
    if (found.length > max) found.shift();
  }
  return found;
}

/** Which occurrences a scheduler fires now, and how far it has handled the timing. */
export interface OccurrencePlan {
  /** Occurrences to start an instance for, in order. */
  readonly fire: readonly number[];
  /** Occurrences that fell before the scheduler started (its downtime). */
  readonly missed: readonly number[];
  /** Missed occurrences that `catchUp` leaves out. */
  readonly skipped: number;
  /** Every occurrence up to this is handled (fired or skipped). */
  readonly handledThrough: number;
}

/**
 * Plans what is due at `now` of a schedule handled through `handledThrough`. Occurrences before
 * `missedBefore` (the scheduler's start: they fell in its downtime) are missed and follow
 * `catchUp`: none of them, the latest once, or all (at most {@link MAX_CATCH_UP}); the others are
 * simply due (a timer that fired late) and all fire.
 */
export function planOccurrences(
  timing: ScheduleTiming,
  handledThrough: number,
  now: number,
  catchUp: "none" | "latest" | "all",
  missedBefore: number,
): OccurrencePlan {
  const due = occurrencesBetween(timing, handledThrough, now, MAX_CATCH_UP);
  if (due.length === 0) return { fire: [], missed: [], skipped: 0, handledThrough };
  const missed = due.filter((at) => at < missedBefore);
  const current = due.filter((at) => at >= missedBefore);
  const caught = catchUp === "all" ? missed : catchUp === "latest" ? missed.slice(-1) : [];
  return {
    fire: [...caught, ...current],
    missed,
    skipped: missed.length - caught.length,
    handledThrough: due.at(-1) as number,
  };
}
