// Packages a benchmark measures against but the project does not depend on (a peer gateway,
// another NATS client): installed on demand with npm into .bench-deps/ (git-ignored), never
// into the project's own node_modules. A benchmark that cannot get them skips their rows
// and says why.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

/**
 * The v3 NATS client (bench/nats-clients.bench.ts), pinned: the newest of each package on npm
 * when the comparison was written (services has no 3.x release beyond this pre-release).
 */
export const NATS_V3 = ["@nats-io/transport-node@3.4.0", "@nats-io/jetstream@3.4.0", "@nats-io/kv@3.4.0", "@nats-io/services@3.0.0-25"];

/** Where the benchmark-only packages live. */
export const DEPS_DIR = join(process.cwd(), ".bench-deps");

/** The installed version of `name` in .bench-deps, if any. */
function installed(name: string): string | undefined {
  const file = join(DEPS_DIR, "node_modules", name, "package.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version : undefined;
}

/** Splits "@scope/name@1.2.3" into its name and version. */
function split(spec: string): [string, string] {
  const at = spec.lastIndexOf("@");
  return [spec.slice(0, at), spec.slice(at + 1)];
}

export type Deps = { ok: true; dir: (name: string) => string; require: NodeJS.Require } | { ok: false; why: string };

/**
 * Makes sure every `name@version` in `specs` is in .bench-deps (one `npm install --prefix`
 * for those missing, at most 90 s) and returns how to reach them, or why it could not.
 */
export function benchDeps(specs: string[]): Deps {
  const missing = specs.filter((s) => installed(split(s)[0]) !== split(s)[1]);
  if (missing.length) {
    mkdirSync(DEPS_DIR, { recursive: true });
    console.log(`installing ${missing.join(", ")} into .bench-deps/ (benchmark only)`);
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    const r = spawnSync(npm, ["install", "--prefix", DEPS_DIR, "--no-audit", "--no-fund", "--loglevel=error", ...missing], {
      encoding: "utf8",
      timeout: 90_000,
    });
    const still = specs.filter((s) => installed(split(s)[0]) !== split(s)[1]);
    if (still.length) {
      const why = r.error ? r.error.message : (r.stderr || r.stdout || `npm exited ${r.status}`).trim().split("\n").slice(-3).join(" ");
      return { ok: false, why: `could not install ${still.join(", ")} with npm: ${why}` };
    }
  }
  return { ok: true, dir: (name) => join(DEPS_DIR, "node_modules", name), require: createRequire(join(DEPS_DIR, "package.json")) };
}
