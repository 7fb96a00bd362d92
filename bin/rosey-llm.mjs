#!/usr/bin/env node
// Entry point of `npx rosey-llm`: builds the bundles when they are missing, then runs the CLI.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "dist", "runtime", "cli.js");
if (!existsSync(cli)) {
  const r = spawnSync(process.execPath, [join(root, "build.mjs"), "--quiet"], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
const { main } = await import(pathToFileURL(cli).href);
const code = await main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`rosey-llm: ${err.message}\n`);
  return 1;
});
if (code >= 0) process.exit(code);
