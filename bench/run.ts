// `npm run bench`: runs every bench/*.bench.ts one after another, each in its own child
// process (so one benchmark's servers, timers and heap never disturb the next), each
// writing its own section of BENCHMARKS.md, then prints a summary. A benchmark that runs
// past its share of the time budget is killed, so the whole run stops by itself.
//
//   npm run bench                  every benchmark
//   npm run bench -- e2e limiter   only those whose file name contains one of the words
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

/** Longest one benchmark may run before it is killed. */
const PER_BENCH_MS = 150_000;
/** Benchmarks that need longer: scale loads 200,000 keys and runs 20,000 chats. */
const LONGER_MS: Record<string, number> = { scale: 600_000 };
/** Longest the whole run may take; later benchmarks are skipped once it is spent. */
const TOTAL_MS = 900_000;

interface Outcome {
  name: string;
  status: "ok" | "failed" | "timed out" | "skipped";
  seconds: number;
  tail: string;
}

/** Runs one benchmark file with tsx, streaming its output, killing it after `limitMs`. */
function runOne(file: string, limitMs: number): Promise<Omit<Outcome, "name">> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", file], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const keep = (d: Buffer, to: NodeJS.WriteStream) => {
      to.write(d);
      out = (out + d.toString()).slice(-4_000);
    };
    child.stdout.on("data", (d: Buffer) => keep(d, process.stdout));
    child.stderr.on("data", (d: Buffer) => keep(d, process.stderr));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGTERM");
      // A benchmark that ignores SIGTERM still goes.
      setTimeout(() => child.kill("SIGKILL"), 5_000).unref();
    }, limitMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      resolve({ status: timedOut ? "timed out" : code === 0 ? "ok" : "failed", seconds, tail: out });
    });
  });
}

async function main() {
  const dir = join(process.cwd(), "bench");
  const filters = process.argv.slice(2);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".bench.ts"))
    .filter((f) => filters.length === 0 || filters.some((w) => f.includes(w)))
    .sort();
  if (files.length === 0) {
    console.error(`no benchmark matches ${filters.join(", ")}`);
    process.exit(1);
  }
  const started = performance.now();
  const outcomes: Outcome[] = [];
  for (const f of files) {
    const name = f.replace(/\.bench\.ts$/, "");
    const left = TOTAL_MS - (performance.now() - started);
    if (left < 10_000) {
      outcomes.push({ name, status: "skipped", seconds: 0, tail: "" });
      continue;
    }
    console.log(`\n=== ${name} (bench/${f}) ===\n`);
    outcomes.push({ name, ...(await runOne(join(dir, f), Math.min(LONGER_MS[name] ?? PER_BENCH_MS, left))) });
  }

  console.log("\n=== summary ===\n");
  for (const o of outcomes) console.log(`${o.name.padEnd(16)} ${o.status.padEnd(10)} ${o.seconds.toFixed(0).padStart(4)} s`);
  const total = ((performance.now() - started) / 1000).toFixed(0);
  console.log(`\n${outcomes.filter((o) => o.status === "ok").length}/${outcomes.length} benchmarks ok in ${total} s; figures in BENCHMARKS.md`);
  for (const o of outcomes.filter((x) => x.status === "failed" || x.status === "timed out")) {
    console.log(`\n--- ${o.name}: last output ---\n${o.tail}`);
  }
  if (outcomes.some((o) => o.status !== "ok")) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
