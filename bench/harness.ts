// What the multi-process benchmarks share: starting a child and waiting until it says it is
// ready, stopping it, reading a process's CPU time and memory from /proc, and keeping a
// number of requests in flight for a while with every latency kept.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

/** Every child a benchmark started, so that none outlives it. */
export const children: ChildProcess[] = [];

/**
 * Makes the benchmark end by itself after `ms` even if something hangs, and when the runner
 * stops it (SIGTERM, SIGINT), taking every child and `also()` (the nats-server) along.
 * Returns the timer, to clear once the benchmark is done.
 */
export function guardRun(name: string, ms: number, also: () => ChildProcess | undefined): NodeJS.Timeout {
  const abort = (why: string) => abortRun(name, why, also);
  const guard = setTimeout(() => abort("over time, giving up"), ms);
  guard.unref();
  process.once("SIGTERM", () => abort("stopped (SIGTERM)"));
  process.once("SIGINT", () => abort("stopped (SIGINT)"));
  return guard;
}

/** Ends the benchmark at once with `why`, killing every child and `also()` (the nats-server). */
export function abortRun(name: string, why: string, also: () => ChildProcess | undefined): never {
  console.error(`${name} bench: ${why}`);
  for (const c of children) c.kill("SIGKILL");
  also()?.kill("SIGKILL");
  process.exit(1);
}

/** Runs `stop` when this process is told to end: SIGTERM, SIGINT, or its parent closing stdin. */
export function onStop(stop: () => void): void {
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  // The parent going away must not leave this process behind.
  process.stdin.on("close", stop);
  process.stdin.resume();
}

/** A started child and what it had printed (on the watched stream) when it was ready. */
export interface Started {
  child: ChildProcess;
  output: string;
}

/**
 * Spawns `node <args>` and resolves once its output (`stream`) matches `ready`; rejects
 * when it exits first or is not ready in 30 s. stdin stays open: a child that watches it
 * goes away with the benchmark.
 */
export function spawnReady(name: string, args: string[], env: NodeJS.ProcessEnv, ready: RegExp, stream: "stdout" | "stderr", cwd = process.cwd()): Promise<Started> {
  const child = spawn(process.execPath, args, { cwd, env, stdio: ["pipe", "pipe", "pipe"] });
  children.push(child);
  let log = "";
  let seen = "";
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${name} not ready in 30 s:\n${log.slice(-2000)}`)), 30_000);
    const onData = (d: Buffer) => {
      if (log.length < 50_000) (log += d.toString()), (seen += d.toString());
      if (ready.test(seen)) {
        clearTimeout(timer);
        res({ child, output: seen });
      }
    };
    child.stdout!.on("data", stream === "stdout" ? onData : () => undefined);
    child.stderr!.on("data", stream === "stderr" ? onData : (d: Buffer) => void (log.length < 50_000 && (log += d.toString())));
    child.once("exit", (code) => {
      clearTimeout(timer);
      rej(new Error(`${name} exited (${code}) before it was ready:\n${log.slice(-2000)}`));
    });
  });
}

/** Where a service process started by `openaiServiceEnv` finds NATS, its model server and its data. */
export interface OpenAIService {
  natsUrl: string;
  /** LLM_PROVIDERS: `openai`, or `openai,offline`. */
  providers: string;
  baseUrl: string;
  apiKey: string;
  model: string;
  dataDir: string;
}

/**
 * The environment of a `dist/runtime/cli.js start` process whose openai provider points at a
 * (fake) OpenAI-compatible server, with every limit raised so no benchmark request is refused.
 */
export function openaiServiceEnv(o: OpenAIService): NodeJS.ProcessEnv {
  const limits = ["USER_PER_MINUTE", "USER_PER_HOUR", "USER_PER_DAY", "USER_TOKENS_PER_DAY", "CHANNEL_PER_HOUR", "GLOBAL_TOKENS_PER_DAY"];
  return {
    ...process.env,
    NATS_URL: o.natsUrl,
    LOG_LEVEL: "info",
    LLM_PROVIDERS: o.providers,
    OPENAI_BASE_URL: o.baseUrl,
    OPENAI_API_KEY: o.apiKey,
    OPENAI_MODEL: o.model,
    ...Object.fromEntries(limits.map((k) => [`ROSEY_LIMIT_${k}`, "1000000000000"])),
    ROSEY_DATA_DIR: o.dataDir,
  };
}

/** Stops a child with SIGTERM and waits for it; SIGKILL after 10 s. */
export async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once("exit", () => r()));
  c.kill("SIGTERM");
  const t = setTimeout(() => c.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

/** Resident set size of a process in MiB, from /proc. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** CPU time (user + system) a process has used so far, in ms, from /proc (100 ticks per second). */
export function cpuMs(pid: number): number {
  // Fields after the command name, which is in parentheses and may contain spaces.
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** One measurement: every latency (ms), the answers that were and were not a success. */
export interface Run {
  lat: number[];
  ok: number;
  errors: number;
  seconds: number;
}

/**
 * Keeps `inFlight` calls of `call` outstanding for `ms` milliseconds. `call` resolves true
 * for a successful answer, false for an error answer, and may throw (counted as an error).
 */
export async function drive(call: (i: number) => Promise<boolean>, inFlight: number, ms: number): Promise<Run> {
  const lat: number[] = [];
  let ok = 0;
  let errors = 0;
  let seq = Math.floor(Math.random() * 1_000_000);
  const t0 = performance.now();
  const end = t0 + ms;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        try {
          if (await call(seq++)) ok++;
          else errors++;
        } catch {
          errors++;
        }
        lat.push(performance.now() - s);
      }
    }),
  );
  return { lat, ok, errors, seconds: (performance.now() - t0) / 1000 };
}
