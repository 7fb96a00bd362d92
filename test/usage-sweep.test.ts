// Finished days of users and channels nobody writes any more reach the usage bucket before
// their documents expire (lib/limiter/sweep.ts), on a real nats-server: a user seen once
// keeps that day in `rosey-llm usage`; a channel's document in the memory bucket is kept
// once its day is finished; two instances sweeping both buckets at once store each day
// once; a sweep that dies mid-step is taken up where it stood.
import { KvWatchInclude, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultConfig } from "../lib/config";
import type { Clock } from "../lib/context";
import { encodeName } from "../lib/keys";
import type { Kv } from "../lib/kv";
import { calendar, createLimiter, LIMITS_TTL_MS, type RuntimeLimiter } from "../lib/limiter";
import { createHistory } from "../lib/limiter/history";
import { channelsWalk, createSweeper, MEMORY_SWEEP_KEY, SWEEP_KEY, type Sweeper } from "../lib/limiter/sweep";
import type { SweepStep } from "../lib/limiter/types";
import { silentLogger } from "../lib/log";
import { usageRows } from "../runtime/cli-usage";
import { natsKv } from "../runtime/kv";
import { streamReads } from "../runtime/kv-reads";
import { BUCKETS, provisionBuckets } from "../runtime/provision";
import { client, request, startInstance, type TestInstance } from "./helpers/service";
import { startTestServer, type TestServer } from "./helpers/nats";

const DAY = 86_400_000;
const events = { emit: () => "", async flush() {} };
const enc = new TextEncoder();
const dec = new TextDecoder();
const config = defaultConfig({ limits: { user_per_minute: 1000, user_per_hour: 1000 } as never });

/** A clock the test moves. */
const clockAt = (iso: string) => ({ t: Date.parse(iso), now() { return this.t; } });

/** Every write to the usage bucket's day keys, counted per key, from now on. */
async function countWrites(nc: NatsConnection): Promise<{ writes: Map<string, number>; stop(): void }> {
  const kv = await nc.jetstream().views.kv(BUCKETS.usage);
  const writes = new Map<string, number>();
  const it = await kv.watch({ key: "d.>", include: KvWatchInclude.UpdatesOnly });
  void (async () => {
    for await (const e of it) if (e.operation === "PUT") writes.set(e.key, (writes.get(e.key) ?? 0) + 1);
  })();
  return { writes, stop: () => it.stop() };
}

/** A limiter over the real buckets, as the runtime builds it, with the sweep stepped by the test. */
async function limiterOn(nc: NatsConnection, clock: Clock, instance: string, usage?: Kv) {
  const b = await provisionBuckets(nc.jetstream(), config);
  const jsm = await nc.jetstreamManager();
  const { scan } = streamReads(nc, jsm, BUCKETS.limits, false);
  const limits = natsKv(b.limits, BUCKETS.limits, jsm);
  const history = usage ?? natsKv(b.usage, BUCKETS.usage, jsm);
  return createLimiter({ kv: { ...limits, scan }, config, clock, events, log: silentLogger, instance, history, sweep: { batch: 16, idleMs: 0 } });
}

/** A sweep of both buckets, as the runtime runs it, stepped by the test. */
async function sweeperOn(nc: NatsConnection, clock: Clock, usage?: Kv): Promise<Sweeper> {
  const b = await provisionBuckets(nc.jetstream(), config);
  const jsm = await nc.jetstreamManager();
  const history = usage ?? natsKv(b.usage, BUCKETS.usage, jsm);
  const scanOf = (bucket: string) => streamReads(nc, jsm, bucket, false).scan;
  return createSweeper({
    scan: scanOf(BUCKETS.limits),
    sources: [channelsWalk(scanOf(BUCKETS.memory))],
    usage: history,
    history: createHistory(history, silentLogger),
    calendar: calendar(config.timezone),
    clock,
    log: silentLogger,
    settings: { batch: 16, idleMs: 0 },
  });
}

/**
 * `n` channels' documents in the memory bucket holding `day` (channel i: i + 1 calls of 10
 * tokens each), as the limiter writes them, each after an exchange of the channel (a key
 * the walk skips).
 */
async function channelDocs(nc: NatsConnection, prefix: string, day: string, n: number) {
  const memory = natsKv((await provisionBuckets(nc.jetstream(), config)).memory, BUCKETS.memory);
  for (let i = 0; i < n; i++) {
    const ch = encodeName(`#${prefix}${i}`);
    const q = i + 1;
    await memory.put(`t.${ch}.0`, enc.encode("{}"));
    const doc = { l: [Date.parse(day)], d: { w: day, q, u: 10 * q, p: { offline: [q, 10 * q] } } };
    await memory.put(`l.${ch}.doc`, enc.encode(JSON.stringify(doc)), { ttlSeconds: LIMITS_TTL_MS / 1000 });
  }
}

/** One call admitted and settled. */
async function call(limiter: RuntimeLimiter, user: string, channel: string, tokens: number) {
  const t = await limiter.admit({ user, channel, tokens: 100 });
  if (!t.ok) throw new Error(t.message);
  await limiter.settle(t, { tokens, provider: "offline" });
}

/** Steps until a step says the walks are done; the steps' results. */
async function sweepAll(step: () => Promise<SweepStep>) {
  const steps = [];
  for (let i = 0; i < 1000; i++) {
    const s = await step();
    steps.push(s);
    if (s.done) return steps;
  }
  throw new Error("the sweep did not finish");
}

/** The usage bucket's copy of a day, or null. */
async function kept(nc: NatsConnection, day: string, scope: "u" | "c", name: string) {
  const e = await (await nc.jetstream().views.kv(BUCKETS.usage)).get(`d.${day}.${scope}.${encodeName(name)}`);
  return e && e.value.length ? JSON.parse(dec.decode(e.value)) : null;
}

describe("a user seen once keeps that day in usage history", () => {
  let srv: TestServer;
  let inst: TestInstance;
  let nc: NatsConnection;
  const clock = clockAt("2024-05-01T12:00:00Z");

  beforeAll(async () => {
    srv = await startTestServer();
    inst = await startInstance(srv.url, {}, { clock });
    nc = await client(srv.url);
  });
  afterAll(async () => {
    await nc?.close();
    await inst?.stop();
    await srv?.cleanup();
  });

  it("after three silent days and the limits document gone", async () => {
    const r = await request(nc, "rosey.llm.chat", { channel: "#once", user: "ada", message: "hello there" });
    expect(r.body.success).toBe(true);
    const limits = await nc.jetstream().views.kv(BUCKETS.limits);
    // The channel's usage is written within 1.5 s of the call.
    const channelToday = () => usageRows(nc, config, { channel: "#once", days: 1, now: clock.t });
    for (let i = 0; i < 100 && !(await channelToday()).length; i++) await new Promise((res) => setTimeout(res, 50));
    // Day 2: nobody comes back; the sweep finds day 1 finished.
    clock.t += DAY;
    await sweepAll(() => (inst.ctx.limiter as RuntimeLimiter).sweep());
    // The limits bucket drops idle documents (48 h in service; 1 s here).
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(`KV_${BUCKETS.limits}`);
    await jsm.streams.update(info.config.name, { ...info.config, max_age: 1_000_000_000, duplicate_window: 1_000_000_000 });
    for (let i = 0; i < 100 && (await limits.get(`u.${encodeName("ada")}`))?.value.length; i++) await new Promise((res) => setTimeout(res, 100));
    expect((await limits.get(`u.${encodeName("ada")}`))?.value.length ?? 0).toBe(0);

    clock.t += 2 * DAY;
    const rows = await usageRows(nc, config, { user: "ada", channel: "#once", days: 5, now: clock.t });
    expect(rows).toEqual([
      ["2024-05-01", "channel", "#once", "offline", 1, expect.any(Number)],
      ["2024-05-01", "user", "ada", "offline", 1, expect.any(Number)],
    ]);
    expect(rows[0][5]).toBeGreaterThan(0);
    expect(rows[1][5]).toBe(rows[0][5]);
  });
});

describe("the sweep over several instances", () => {
  let srv: TestServer;
  const conns: NatsConnection[] = [];

  beforeAll(async () => {
    srv = await startTestServer();
    for (let i = 0; i < 3; i++) conns.push(await client(srv.url));
  });
  afterAll(async () => {
    await Promise.all(conns.map((c) => c.close()));
    await srv?.cleanup();
  });

  /** 60 users in 6 channels on `day`, settled through `limiter`, then its timers stopped. */
  async function dayOf(limiter: RuntimeLimiter, prefix: string) {
    await Promise.all(Array.from({ length: 60 }, (_, i) => call(limiter, `${prefix}${i}`, `#${prefix}${i % 6}`, i + 1)));
    await limiter.close();
  }

  it("keeps a channel's document in the memory bucket once its day is finished, and stops its walk at an open day", async () => {
    const clock = clockAt("2024-05-10T15:00:00Z");
    const a = await sweeperOn(conns[0], clock);
    await channelDocs(conns[0], "mem", "2024-05-10", 5);
    clock.t += DAY;
    await channelDocs(conns[0], "open", "2024-05-11", 1);
    const steps = await sweepAll(a.step);
    // The six channel documents, up to the open one; the exchanges between them are not sent.
    expect(steps.reduce((n, x) => n + x.read, 0)).toBe(6);
    expect(steps.reduce((n, x) => n + x.kept, 0)).toBe(5);
    expect(await kept(conns[2], "2024-05-10", "c", "#mem3")).toEqual({ requests: 4, tokens: 40, by_provider: { offline: { requests: 4, tokens: 40 } } });
    // The walk stopped at the channel whose day is open: the next day it goes on from there.
    expect(await kept(conns[2], "2024-05-11", "c", "#open0")).toBeNull();
    clock.t += DAY;
    const next = await sweepAll(a.step);
    expect(next.reduce((n, x) => n + x.read, 0)).toBe(1);
    expect(await kept(conns[2], "2024-05-11", "c", "#open0")).toMatchObject({ requests: 1, tokens: 10 });
  });

  it("two instances sweeping both buckets at once store each day once, with its figures", async () => {
    const clock = clockAt("2024-06-01T15:00:00Z");
    const a = await limiterOn(conns[0], clock, "a");
    await dayOf(a, "two");
    await channelDocs(conns[0], "moved", "2024-06-01", 40);
    const [sa, sb] = await Promise.all([sweeperOn(conns[0], clock), sweeperOn(conns[1], clock)]);
    const watch = await countWrites(conns[2]);
    clock.t += DAY;
    await Promise.all([sweepAll(sa.step), sweepAll(sb.step)]);
    await new Promise((res) => setTimeout(res, 200));
    watch.stop();
    const users = [...watch.writes.keys()].filter((k) => k.includes(".u."));
    const channels = [...watch.writes.keys()].filter((k) => k.includes(".c."));
    expect(users).toHaveLength(60);
    // 6 channels with documents in the limits bucket (from before they moved), 40 in the memory bucket.
    expect(channels).toHaveLength(46);
    expect([...watch.writes.values()].every((n) => n === 1)).toBe(true);
    expect(await kept(conns[2], "2024-06-01", "u", "two7")).toEqual({ requests: 1, tokens: 8, by_provider: { offline: { requests: 1, tokens: 8 } } });
    // Channel #two1 had users 1, 7, 13, …, 55: 10 calls of 2 + 8 + … + 56 tokens.
    expect(await kept(conns[2], "2024-06-01", "c", "#two1")).toMatchObject({ requests: 10, tokens: 290 });
    expect(await kept(conns[2], "2024-06-01", "c", "#moved39")).toMatchObject({ requests: 40, tokens: 400 });
    // Done for the day: another step reads nothing.
    expect(await sa.step()).toEqual({ read: 0, kept: 0, done: true });
  });

  it("a sweep that dies mid-step is taken up from where it stood by another instance", async () => {
    const clock = clockAt("2024-07-01T15:00:00Z");
    const usage = natsKv((await provisionBuckets(conns[0].jetstream(), config)).usage, BUCKETS.usage);
    // Instance A dies after storing 5 copies of a step: its positions are not moved.
    let creates = 0;
    let dying = false;
    const failing: Kv = {
      ...usage,
      async create(k, v, o) {
        if (dying && k.startsWith("d.") && ++creates > 5) throw new Error("killed");
        return usage.create(k, v, o);
      },
    };
    await dayOf(await limiterOn(conns[0], clock, "a3"), "crash");
    await channelDocs(conns[0], "crashed", "2024-07-01", 40);
    const a = await sweeperOn(conns[0], clock, failing);
    const watch = await countWrites(conns[2]);
    clock.t += DAY;
    const before = await a.step();
    expect(before.done).toBe(false);
    const raw = await conns[2].jetstream().views.kv(BUCKETS.usage);
    const position = (k: string) => raw.get(k).then((e) => JSON.parse(dec.decode(e!.value)));
    const stood = { limits: await position(SWEEP_KEY), memory: await position(MEMORY_SWEEP_KEY) };
    dying = true;
    await expect(a.step()).rejects.toThrow("killed");
    expect({ limits: await position(SWEEP_KEY), memory: await position(MEMORY_SWEEP_KEY) }).toEqual(stood);

    const b = await sweeperOn(conns[1], clock);
    const steps = await sweepAll(b.step);
    await new Promise((res) => setTimeout(res, 200));
    watch.stop();
    expect([...watch.writes.keys()].filter((k) => k.startsWith("d.2024-07-01.u."))).toHaveLength(60);
    expect([...watch.writes.keys()].filter((k) => k.startsWith("d.2024-07-01.c."))).toHaveLength(46);
    expect([...watch.writes.values()].every((n) => n === 1)).toBe(true);
    // B began at the stored positions: it read what A had not walked past, no more.
    const jsm = await conns[2].jetstreamManager();
    const left = async (bucket: string, filter: string, from: number) => (await streamReads(conns[2], jsm, bucket, false).scan(filter, from, 10_000)).changes.length;
    const unread = (await left(BUCKETS.limits, ">", stood.limits.seq)) + (await left(BUCKETS.memory, "l.*.doc", stood.memory.seq));
    expect(steps.reduce((n, s) => n + s.read, 0)).toBe(unread);
  });
});
