// Bundles every handlers/<name>.ts into dist/handlers/<name>.js and the runtime into
// dist/runtime/. Packages stay external: node_modules is resolved at run time, which keeps
// bundles small and lets every bundle share one copy of zod with the runtime. Memory recall's
// synonym table goes beside the runtime bundles, where lib/memory/synonyms.ts looks for it.
import { build } from "esbuild";
import { copyFileSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const quiet = process.argv.includes("--quiet");
const started = performance.now();

const handlers = readdirSync(join(root, "handlers"))
  .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
  .map((f) => join(root, "handlers", f));

const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: true,
  packages: "external",
  logLevel: "warning",
};

rmSync(join(root, "dist"), { recursive: true, force: true });
await Promise.all([
  build({ ...common, entryPoints: handlers, outdir: join(root, "dist", "handlers") }),
  build({
    ...common,
    entryPoints: [join(root, "runtime", "cli.ts"), join(root, "runtime", "index.ts")],
    outdir: join(root, "dist", "runtime"),
  }),
  // The typed client other plugins import as "rosey-llm/client".
  build({ ...common, entryPoints: [join(root, "lib", "client.ts")], outfile: join(root, "dist", "client.js") }),
]);
copyFileSync(join(root, "lib", "memory", "synonyms.txt"), join(root, "dist", "runtime", "synonyms.txt"));

if (!quiet) {
  const ms = (performance.now() - started).toFixed(0);
  console.log(`built ${handlers.length} handler bundles and the runtime into dist/ in ${ms} ms`);
}
