import type { StoredInstance } from "../store/store.js";

/** Rows read per store page while paging by bytes: at most, and to begin with. */
export const PAGE_MAX_ROWS = 200;
export const PAGE_FIRST_ROWS = 16;
/** The page size adapts so that a page holds about this much: rows with large outputs come fewer at a time. */
const PAGE_BYTES = 1024 * 1024;
/** Rows in one message at most, however small. */
const MESSAGE_MAX_ROWS = 500;

/** The next page size after a page of `rows` rows that came to `bytes`. */
export function nextPageSize(rows: number, bytes: number, max = PAGE_MAX_ROWS): number {
  const perRow = Math.max(1, bytes / Math.max(1, rows));
  return Math.max(1, Math.min(max, Math.floor(PAGE_BYTES / perRow)));
}

/** About how many bytes rows take on the wire. */
export function sizeOfRows(rows: readonly StoredInstance[]): number {
  let bytes = 0;
  for (const row of rows) bytes += approximateSize(row);
  return bytes;
}

function approximateSize(row: StoredInstance): number {
  return (
    256 +
    (row.output?.length ?? 0) +
    (row.result?.length ?? 0) +
    (row.error === undefined ? 0 : row.error.message.length + (row.error.stack?.length ?? 0))
  );
}

/** Splits rows into messages of at most half of `maxMessageBytes`, and at most 500 rows each. */
export function chunkRows(rows: readonly StoredInstance[], maxMessageBytes: number): StoredInstance[][] {
  const budget = Math.floor(maxMessageBytes / 2);
  const chunks: StoredInstance[][] = [];
  let chunk: StoredInstance[] = [];
  let bytes = 0;
  for (const row of rows) {
    const size = approximateSize(row);
    if (chunk.length > 0 && (chunk.length >= MESSAGE_MAX_ROWS || bytes + size > budget)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(row);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}
