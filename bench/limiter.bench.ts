// Limiter benchmark: admissions per second and admit latency across three instances
// (three connections to one nats-server), for one hot user, 50 hot users, and 50 users in
// one channel, against a bare KV get + put measured in the same run.
// Run: node --import tsx bench/limiter.bench.ts   (starts and stops its own nats-server)
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { connect, type NatsConnection } from "nats";
import { defaultConfig } from "../lib/config";
import type { AdmitRequest, Events } from "../lib/context";
import type { Kv } from "../lib/kv";
import { createLimiter, LIMITS_TTL_MS, type RuntimeLimiter } from "../lib/limiter";
import { silentLogger } from "../lib/log";
import { natsKv } from "../runtime/kv";
import { findNatsServer, startNatsServer } from "../runtime/nats-server";
import { ms, percentile, writeSection } from "./lib";

const DURATION_MS = 4_000;
const IN_FLIGHT_PER_INSTANCE = 8;
const INSTANCES = 3;

// The benchmark must end on its own even if something hangs.
const guard = setTimeout(() => {
  console.error("limiter bench: over time, giving up");
  process.exit(1);
}, 75_000);
guard.unref();

interface Result {
  name: string;
  ops: number;
  admitted: number;
  errors: number;
  seconds: number;
  lat: number[];
  retries: number;
  leases: number;
  rollbacks: number;
}

/** Runs `op` with IN_FLIGHT_PER_INSTANCE loops per instance until the duration is over. */
async function drive(name: string, op: (instance: number, seq: number) => Promise<boolean>): Promise<Result> {
  const lat: number[] = [];
  let ops = 0;
  let admitted = 0;
  let errors = 0;
  let seq = 0;
  const t0 = performance.now();
  const end = t0 + DURATION_MS;
  const loops: Promise<void>[] = [];
  for (let i = 0; i < INSTANCES; i++) {
    for (let j = 0; j < IN_FLIGHT_PER_INSTANCE; j++) {
      loops.push(
        (async () => {
          while (performance.now() < end) {
            const s = performance.now();
            try {
              if (await op(i, seq++)) admitted++;
            } catch {
              errors++;
            }
            lat.push(performance.now() - s);
            ops++;
          }
        })(),
      );
    }
  }
  await Promise.all(loops);
  return { name, ops, admitted, errors, seconds: (performance.now() - t0) / 1000, lat, retries: 0, leases: 0, rollbacks: 0 };
}

const noEvents: Events = { emit: () => "bench", flush: async () => {} };

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "rosey-limiter-bench-"));
  const srv = await startNatsServer({ storeDir: dir });
  const conns: NatsConnection[] = [];
  try {
    for (let i = 0; i < INSTANCES; i++) conns.push(await connect({ servers: srv.url, name: `bench-${i}` }));
    const results: Result[] = [];

    // Baseline: the two round trips an uncontended CAS costs, as a plain get then put.
    await conns[0].jetstream().views.kv("BENCH_BASE", { history: 1 });
    const base: Kv[] = await Promise.all(conns.map(async (nc) => natsKv(await nc.jetstream().views.kv("BENCH_BASE"), "BENCH_BASE")));
    const payload = new TextEncoder().encode(JSON.stringify({ m: { w: "0", n: 1 }, h: { w: "0", n: 1 }, d: { w: "x", n: 1, t: 1, u: 0 } }));
    results.push(
      await drive("bare KV get + put (50 keys)", async (i, s) => {
        const k = `k${s % 50}`;
        await base[i].get(k);
        await base[i].put(k, payload);
        return true;
      }),
    );

    let bucketSeq = 0;
    const scenario = async (name: string, req: (s: number) => AdmitRequest) => {
      const bucket = `BENCH_LIMITS_${++bucketSeq}`;
      await conns[0].jetstream().views.kv(bucket, { history: 1, ttl: LIMITS_TTL_MS });
      // Limits high enough that every request is admitted: this measures the cost of
      // admitting, not of refusing. The global budget is served by 10,000-token leases.
      const config = defaultConfig({
        limits: {
          user_per_minute: 1e9,
          user_per_hour: 1e9,
          user_per_day: 1e9,
          user_tokens_per_day: 1e12,
          channel_per_hour: 1e9,
          global_tokens_per_day: 1e12,
        } as never,
      });
      const limiters: RuntimeLimiter[] = await Promise.all(
        conns.map(async (nc) =>
          createLimiter({
            kv: natsKv(await nc.jetstream().views.kv(bucket), bucket),
            config,
            clock: { now: () => Date.now() },
            events: noEvents,
            log: silentLogger,
            leaseTokens: 10_000,
          }),
        ),
      );
      const r = await drive(name, async (i, s) => (await limiters[i].admit(req(s))).ok);
      await Promise.all(limiters.map((l) => l.close()));
      r.retries = limiters.reduce((a, l) => a + l.stats.casRetries, 0);
      r.leases = limiters.reduce((a, l) => a + l.stats.leases, 0);
      r.rollbacks = limiters.reduce((a, l) => a + l.stats.rollbacks, 0);
      results.push(r);
    };

    await scenario("admit: 1 hot user", () => ({ user: "hot", tokens: 100 }));
    await scenario("admit: 50 hot users", (s) => ({ user: `user-${s % 50}`, tokens: 100 }));
    await scenario("admit: 50 users, 1 channel", (s) => ({ user: `user-${s % 50}`, channel: "#busy", tokens: 100 }));

    const natsVersion = execFileSync(findNatsServer(), ["--version"], { encoding: "utf8" }).trim();
    const rows = results.map((r) => {
      const perSec = Math.round(r.admitted / r.seconds);
      const retries = r.name.startsWith("bare") ? "–" : `${r.retries} (${(r.retries / Math.max(1, r.ops)).toFixed(2)}/op)`;
      const leases = r.name.startsWith("bare") ? "–" : String(r.leases);
      return `| ${r.name} | ${r.ops} | ${perSec.toLocaleString("en-US")} | ${ms(percentile(r.lat, 50))} | ${ms(percentile(r.lat, 99))} | ${retries} | ${leases} | ${r.errors} |`;
    });
    const md = [
      "## Limiter (lib/limiter)",
      "",
      "Command: `node --import tsx bench/limiter.bench.ts`",
      "",
      `${INSTANCES} limiter instances, each on its own connection to one ${natsVersion} (file store), ` +
        `${IN_FLIGHT_PER_INSTANCE} admissions in flight per instance (${INSTANCES * IN_FLIGHT_PER_INSTANCE} total), ` +
        `${DURATION_MS / 1000} s per row, Node ${process.version}, ${cpus().length} cores. Limits set high so every ` +
        "request is admitted; each admit reserves 100 tokens (global budget served by 10,000-token leases). " +
        "The baseline row is a plain KV get followed by a put on 50 keys: the two round trips of an uncontended CAS.",
      "",
      "| scenario | operations | admitted/s | p50 | p99 | CAS retries | leases | errors |",
      "|---|---|---|---|---|---|---|---|",
      ...rows,
      "",
      "An admit is a compare-and-set write of the user's document (its rolling log of the last hour gets one more " +
        "entry; with limits this high the log keeps its newest 300 entries one by one and older ones per minute), " +
        "starting from the revision this instance last saw (a read only when it has none, or another instance wrote " +
        "the key lately), and, with a channel, a compare-and-set of the channel's document the same way, concurrently. " +
        "One hot user is one key that every request writes; requests of one instance for the same key are " +
        "group-committed (one CAS decides and writes the whole batch), so the key sees 3 writers, not 24, and CAS " +
        "retries count only the conflicts between instances. In real use the per-minute limit refuses such a user " +
        "after a few requests, with no write. With a channel, the channel's key is the shared one. Latencies include " +
        "queueing behind 24 requests in flight on a 2-core machine that also runs the server (compare the baseline).",
    ].join("\n");
    writeSection("limiter", md);
    console.log(md);
  } finally {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
    clearTimeout(guard);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
