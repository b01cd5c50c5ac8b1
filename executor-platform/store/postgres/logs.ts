/** The PostgreSQL store's logs: chunks of an instance's output, appended, rewritten or deleted. */
import type { LogWrite, StoredLogChunk } from "../store.js";
import { prepared } from "./prepared.js";
import { storeError } from "./store-error.js";
import type { WriteTarget } from "./writes.js";

/**
 * One statement, so one transaction: appends (numbered in input order: the rows are inserted in
 * that order, and the identity grows with each), rewrites and deletes, resolving the new numbers.
 */
const WRITE_LOGS = `
  WITH appended AS (
    INSERT INTO instance_logs (instance_id, lines, line_count)
    SELECT u.instance_id, u.lines, u.line_count
    FROM unnest($1::text[], $2::text[], $3::int4[]) WITH ORDINALITY AS u(instance_id, lines, line_count, n)
    ORDER BY u.n
    RETURNING chunk
  ),
  rewritten AS (
    UPDATE instance_logs AS l SET lines = r.lines, line_count = r.line_count
    FROM unnest($4::int8[], $5::text[], $6::int4[]) AS r(chunk, lines, line_count)
    WHERE l.chunk = r.chunk
  ),
  removed AS (
    DELETE FROM instance_logs WHERE chunk = ANY($7::int8[])
  )
  SELECT chunk FROM appended ORDER BY chunk`;

const READ_FORWARD = `SELECT chunk, lines, line_count FROM instance_logs
  WHERE instance_id = $1 AND chunk > $2 ORDER BY chunk LIMIT $3`;

const READ_BACKWARD = `SELECT chunk, lines, line_count FROM instance_logs
  WHERE instance_id = $1 AND chunk < $2 ORDER BY chunk DESC LIMIT $3`;

interface LogRow {
  chunk: number;
  lines: string;
  line_count: number;
}

export async function writeLogs(target: WriteTarget, write: LogWrite): Promise<number[]> {
  if (write.append.length === 0 && write.rewrite.length === 0 && write.remove.length === 0) return [];
  try {
    // Output, like progress, does not wait for the disk (see `saveRows`).
    const result = await (target.lazyPool ?? target.pool).query<{ chunk: number }>(
      prepared(WRITE_LOGS, [
        write.append.map((c) => c.instanceId),
        write.append.map((c) => c.lines),
        write.append.map((c) => c.lineCount),
        write.rewrite.map((c) => c.chunk),
        write.rewrite.map((c) => c.lines),
        write.rewrite.map((c) => c.lineCount),
        write.remove,
      ]),
    );
    return result.rows.map((row) => row.chunk);
  } catch (error) {
    throw storeError(target.label, error);
  }
}

export async function readLogs(
  target: WriteTarget,
  instanceId: string,
  from: number,
  limit: number,
  direction: "forward" | "backward",
): Promise<StoredLogChunk[]> {
  try {
    const result = await target.pool.query<LogRow>(
      prepared(direction === "forward" ? READ_FORWARD : READ_BACKWARD, [
        instanceId,
        from,
        Math.max(0, Math.floor(limit)),
      ]),
    );
    return result.rows.map((row) => ({
      chunk: row.chunk,
      instanceId,
      lines: row.lines,
      lineCount: row.line_count,
    }));
  } catch (error) {
    throw storeError(target.label, error);
  }
}
