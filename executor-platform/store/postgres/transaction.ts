import type { Pool, PoolClient, QueryResult } from "pg";

/**
 * Checks out a connection, runs `body` between `begin` (whose result it gets) and COMMIT, rolls
 * back when anything fails, and releases the connection (destroying it when it broke).
 */
export async function transaction<T>(
  pool: Pool,
  begin: string,
  body: (client: PoolClient, begun: QueryResult) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  // pg-pool leaves a checked-out connection without an 'error' listener, so one that dies now
  // would crash the process. The failure reaches the pending query anyway; just remember it.
  let broken: Error | undefined;
  const onError = (error: Error): void => {
    broken = error;
  };
  client.on("error", onError);
  try {
    const begun = await client.query(begin);
    const value = await body(client, begun);
    await client.query("COMMIT");
    return value;
  } catch (error) {
    if (broken === undefined) {
      await client.query("ROLLBACK").catch((rollbackError: unknown) => {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
    }
    throw error;
  } finally {
    client.off("error", onError);
    client.release(broken ?? false);
  }
}
