// One NATS client library in a process of its own, driven by bench/nats-clients.bench.ts
// with one JSON command per stdin line and one JSON answer per stdout line: serve a micro
// echo endpoint, or run request/reply or KV loops and report their figures. "v2" is the
// project's nats.js 2.29; "v3" the @nats-io/* packages from .bench-deps/ (benchmark only).
//
//   node --import tsx bench/nats-client.ts <v2|v3> <nats-url>
import { createInterface } from "node:readline";
import { benchDeps, NATS_V3 } from "./deps";
import { drive, onStop } from "./harness";
import { percentile } from "./lib";

/** The same few calls in either library. */
interface Client {
  request(subject: string, data: Uint8Array): Promise<Uint8Array>;
  serve(subject: string, reply: Uint8Array): Promise<void>;
  kv(bucket: string): Promise<{
    get(key: string): Promise<unknown>;
    put(key: string, value: Uint8Array): Promise<number>;
    update(key: string, value: Uint8Array, revision: number): Promise<number>;
  }>;
  close(): Promise<void>;
}

// Both connect the way the service does (runtime/connect.ts): no async stack traces.
const SERVICE = { name: "bench-echo", version: "0.0.1", queue: "bench-echo" };

async function v2(url: string): Promise<Client> {
  const { connect } = await import("nats");
  const nc = await connect({ servers: url, noAsyncTraces: true });
  return {
    request: async (subject, data) => (await nc.request(subject, data, { timeout: 10_000 })).data,
    async serve(subject, reply) {
      const srv = await nc.services.add(SERVICE);
      srv.addEndpoint("echo", { subject, handler: (_err, msg) => void msg.respond(reply) });
    },
    kv: (bucket) => nc.jetstream().views.kv(bucket, { history: 1 }),
    close: () => nc.drain(),
  };
}

async function v3(url: string): Promise<Client> {
  const deps = benchDeps(NATS_V3);
  if (!deps.ok) throw new Error(deps.why);
  // Loaded by path: these packages are not the project's dependencies, so they have no types here.
  const load = (name: string): Promise<any> => import(deps.require.resolve(name));
  const [{ connect }, { Svcm }, { Kvm }] = await Promise.all([load("@nats-io/transport-node"), load("@nats-io/services"), load("@nats-io/kv")]);
  const nc = await connect({ servers: url, noAsyncTraces: true });
  return {
    request: async (subject, data) => (await nc.request(subject, data, { timeout: 10_000 })).data,
    async serve(subject, reply) {
      const srv = await new Svcm(nc).add(SERVICE);
      srv.addEndpoint("echo", { subject, handler: (_err: unknown, msg: { respond(d: Uint8Array): boolean }) => void msg.respond(reply) });
    },
    kv: (bucket) => new Kvm(nc).create(bucket, { history: 1 }),
    close: () => nc.drain(),
  };
}

type Command = { cmd: "serve"; subject: string; bytes: number } | { cmd: "echo"; subject: string; inFlight: number; ms: number } | { cmd: "kv"; bucket: string; inFlight: number; ms: number };

async function main() {
  const [lib, url] = process.argv.slice(2);
  const client = lib === "v3" ? await v3(url) : await v2(url);
  const answer = (x: object) => process.stdout.write(`${JSON.stringify(x)}\n`);
  /** Runs a loop and reports latency percentiles, successes and this process's CPU per call. */
  const measure = async (call: (i: number) => Promise<boolean>, inFlight: number, ms: number) => {
    const cpu0 = process.cpuUsage();
    const r = await drive(call, inFlight, ms);
    const cpu = process.cpuUsage(cpu0);
    const calls = r.ok + r.errors;
    answer({ p50: percentile(r.lat, 50), p99: percentile(r.lat, 99), ok: r.ok, errors: r.errors, seconds: r.seconds, cpuMsPerCall: (cpu.user + cpu.system) / 1000 / calls });
  };
  const buckets = new Map<string, Awaited<ReturnType<Client["kv"]>>>();
  onStop(() => void client.close().finally(() => process.exit(0)));
  answer({ ready: lib });
  for await (const line of createInterface({ input: process.stdin })) {
    const c = JSON.parse(line) as Command;
    if (c.cmd === "serve") {
      await client.serve(c.subject, new Uint8Array(c.bytes).fill(120));
      answer({ serving: c.subject });
    } else if (c.cmd === "echo") {
      const body = new TextEncoder().encode("{}");
      await measure(async () => (await client.request(c.subject, body)).length > 0, c.inFlight, c.ms);
    } else {
      let kv = buckets.get(c.bucket);
      if (!kv) buckets.set(c.bucket, (kv = await client.kv(c.bucket)));
      const store = kv;
      const value = new TextEncoder().encode(JSON.stringify({ count: 1, tokens: 1234, at: Date.now() }));
      // One loop: read a key, write it, then compare-and-set it from the revision just written,
      // the shape of the service's limiter and usage writes. Keys spread over 1,000.
      await measure(
        async (i) => {
          const key = `k${i % 1_000}`;
          await store.get(key);
          const rev = await store.put(key, value);
          return (await store.update(key, value, rev)) > rev;
        },
        c.inFlight,
        c.ms,
      );
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
