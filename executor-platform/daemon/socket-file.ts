import { lstatSync, unlinkSync } from "node:fs";
import { connect } from "node:net";

/**
 * A daemon killed with SIGKILL leaves its socket file behind, and binding it again fails. The
 * file goes only when nothing accepts on it, so a daemon that still runs keeps its address.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  try {
    if (!lstatSync(path).isSocket()) return;
  } catch {
    return;
  }
  const stale = await new Promise<boolean>((done) => {
    const probe = connect(path);
    probe.once("connect", () => {
      probe.destroy();
      done(false);
    });
    probe.once("error", (error: NodeJS.ErrnoException) => done(error.code === "ECONNREFUSED"));
  });
  if (stale) unlinkSync(path);
}
