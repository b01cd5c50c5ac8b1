import { existsSync, realpathSync } from "node:fs";
import { isAbsolute, relative, resolve, sep } from "node:path";

/** Where a client says a task is defined: its path, and the same path relative to its working directory. */
export interface ModuleClaim {
  readonly module: string;
  readonly moduleRelative: string;
}

/** How many resolved modules are remembered before the cache starts over. */
const CACHE_LIMIT = 1024;

/**
 * Decides which module the daemon imports for a task: only real files inside the app root. A
 * client and a container may see the app under different roots, so a path that does not resolve
 * as given is tried again relative to the app root.
 */
export class ModuleResolver {
  readonly appRoot: string;
  readonly #checked = new Map<string, string>();

  constructor(appRoot: string) {
    this.appRoot = realpathSync(resolve(appRoot));
  }

  /** The module's real path, or why it cannot be imported. */
  resolve(claim: ModuleClaim): string | Error {
    const key = `${claim.module}\u0000${claim.moduleRelative}`;
    let checked: string | Error | undefined = this.#checked.get(key);
    if (checked === undefined) {
      checked = this.#check(claim.module);
      if (checked instanceof Error && claim.moduleRelative !== "" && !isAbsolute(claim.moduleRelative)) {
        const underRoot = resolve(this.appRoot, claim.moduleRelative);
        if (existsSync(underRoot)) checked = this.#check(underRoot);
      }
      // Only what resolved is remembered: a module may appear later, and the paths a confused or
      // hostile client makes up must not grow the cache.
      if (typeof checked === "string") {
        if (this.#checked.size >= CACHE_LIMIT) this.#checked.clear();
        this.#checked.set(key, checked);
      }
    }
    return checked;
  }

  #check(module: string): string | Error {
    if (module === "" || !isAbsolute(module)) {
      return new Error(`the daemon cannot tell which module defines it (got ${JSON.stringify(module)})`);
    }
    let real: string;
    try {
      real = realpathSync(module);
    } catch {
      return new Error(`its module ${module} does not exist on the daemon's machine`);
    }
    const rel = relative(this.appRoot, real);
    if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel)) {
      return new Error(
        `its module ${real} is outside the daemon's app root ${this.appRoot}; the daemon imports modules only from inside it`,
      );
    }
    return real;
  }
}
