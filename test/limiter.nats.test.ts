// The limiter against a real nats-server: three instances, each with its own connection,
// its own bucket handle and its own limiter, racing on the same JetStream KV bucket.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, RetentionPolicy, StorageType, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultConfig, type ConfigInput } from "../lib/config";
import type { Events, Ticket } from "../lib/context";
import { createEvents } from "../lib/events";
import { createLimiter, LIMITS_TTL_MS, thresholdEventId, type RuntimeLimiter } from "../lib/limiter";
import { silentLogger } from "../lib/log";
import { natsKv } from "../runtime/kv";
import { startNatsServer, type NatsServer } from "../runtime/nats-server";

const STREAM = "LIMITER_TEST_EVENTS";
let srv: NatsServer;
let dir: string;
const conns: NatsConnection[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "rosey-limiter-"));
  srv = await startNatsServer({ storeDir: dir });
  for (let i = 0; i < 3; i++) conns.push(await connect({ servers: srv.url, name: `limiter-test-${i}` }));
  const jsm = await conns[0].jetstreamManager();
  await jsm.streams.add({
    name: STREAM,
    subjects: ["rosey.event.llm.>"],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    duplicate_window: 120 * 1e9,
  });
});

afterAll(async () => {
  await Promise.all(conns.map((c) => c.close()));
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let bucketSeq = 0;

/** Three instances over a fresh bucket: each its own connection, KV handle, events and limiter. */
async function instances(limits: Partial<ConfigInput["limits"]>, at = "2024-05-01T10:00:05Z") {
  const bucket = `LIMITS_${++bucketSeq}`;
  // Create the bucket once, then open it from every connection.
  await conns[0].jetstream().views.kv(bucket, { history: 1, ttl: LIMITS_TTL_MS });
  const config = defaultConfig({ limits: limits as ConfigInput["limits"] });
  const clock = { t: Date.parse(at), now() { return this.t; } };
  const emitted: Array<{ id: string; payload: Record<string, unknown> }> = [];
  const out: Array<{ limiter: RuntimeLimiter; events: Events }> = [];
  for (const [i, nc] of conns.entries()) {
    const js = nc.jetstream();
    const kv = natsKv(await js.views.kv(bucket), bucket);
    const real = createEvents({
      prefix: "rosey",
      service: "rosey-llm",
      instance: `i${i}`,
      clock,
      log: silentLogger,
      sink: async (subject, data, msgId) => void (await js.publish(subject, data, { msgID: msgId })),
    });
    const events: Events = {
      emit(name, payload, opts) {
        const id = real.emit(name, payload, opts);
        emitted.push({ id, payload: payload as Record<string, unknown> });
        return id;
      },
      publish(name, payload, opts) {
        emitted.push({ id: opts?.id ?? "", payload: payload as Record<string, unknown> });
        return real.publish!(name, payload, opts);
      },
      flush: () => real.flush(),
    };
    out.push({ limiter: createLimiter({ kv, config, clock, events, log: silentLogger }), events });
  }
  return { inst: out, emitted, bucket, clock };
}

const admittedOf = (ts: Ticket[]) => ts.filter((t) => t.ok).length;

async function thresholdMessages(): Promise<number> {
  const jsm = await conns[0].jetstreamManager();
  const info = await jsm.streams.info(STREAM, { subjects_filter: "rosey.event.llm.usage.threshold" });
  return info.state.subjects?.["rosey.event.llm.usage.threshold"] ?? 0;
}

describe("limiter across three instances on nats-server", () => {
  it("rolls the minute exactly: 10 admitted at :59 leave none for :00, on any instance", async () => {
    const { inst, clock } = await instances({ user_per_minute: 10, user_per_hour: 100 }, "2024-05-01T10:00:59.000Z");
    const first = await Promise.all(Array.from({ length: 30 }, (_, i) => inst[i % 3].limiter.admit({ user: "edge", tokens: 1 })));
    expect(admittedOf(first)).toBe(10);
    clock.t = Date.parse("2024-05-01T10:01:00.300Z");
    const next = await Promise.all(Array.from({ length: 30 }, (_, i) => inst[i % 3].limiter.admit({ user: "edge", tokens: 1 })));
    expect(admittedOf(next)).toBe(0);
    for (const t of next) expect(t).toMatchObject({ window: "per-minute", retry_after: 59 });
    clock.t = Date.parse("2024-05-01T10:01:59.000Z");
    const later = await Promise.all(Array.from({ length: 30 }, (_, i) => inst[i % 3].limiter.admit({ user: "edge", tokens: 1 })));
    expect(admittedOf(later)).toBe(10);
  });

  it("admits exactly 7 of 40 concurrent requests from one user; another user is unaffected", async () => {
    const { inst } = await instances({ user_per_minute: 7 });
    const hot = Array.from({ length: 40 }, (_, i) => inst[i % 3].limiter.admit({ user: "hot", channel: "#main", tokens: 50 }));
    const other = Array.from({ length: 6 }, (_, i) => inst[i % 3].limiter.admit({ user: "calm", channel: "#main", tokens: 50 }));
    const [h, o] = await Promise.all([Promise.all(hot), Promise.all(other)]);
    expect(admittedOf(h)).toBe(7);
    expect(admittedOf(o)).toBe(6);
    for (const t of h.filter((t) => !t.ok)) expect(t).toMatchObject({ code: "rate_limited", window: "per-minute", retry_after: 60 });
    // Refused requests consumed nothing: the hour and the channel saw 7 + 6.
    expect(await inst[1].limiter.remaining("hot")).toMatchObject({ per_minute: 0, per_hour: 93, tokens_today: 50_000 - 350 });
  });

  it("holds a channel's hourly limit exactly across different users", async () => {
    const { inst } = await instances({ channel_per_hour: 9 });
    const ts = await Promise.all(Array.from({ length: 40 }, (_, i) => inst[i % 3].limiter.admit({ user: `u${i}`, channel: "a.b", tokens: 1 })));
    expect(admittedOf(ts)).toBe(9);
    // "a" and "a.>" are other channels with their own counters.
    expect((await inst[0].limiter.admit({ user: "x", channel: "a", tokens: 1 })).ok).toBe(true);
    expect((await inst[0].limiter.admit({ user: "y", channel: "a.>", tokens: 1 })).ok).toBe(true);
    // Users refused by the channel kept their whole allowance.
    const per = await Promise.all(ts.map((_, i) => inst[2].limiter.remaining(`u${i}`)));
    expect(per.filter((r) => r.per_minute === 9)).toHaveLength(9);
    expect(per.filter((r) => r.per_minute === 10)).toHaveLength(31);
  });

  it("never reserves past a user's token quota, and settles to the real count", async () => {
    const { inst } = await instances({ user_per_minute: 1000, user_per_hour: 1000, user_per_day: 1000, user_tokens_per_day: 10_000 });
    const ts = await Promise.all(Array.from({ length: 40 }, (_, i) => inst[i % 3].limiter.admit({ user: "tok", tokens: 700 })));
    // floor(10,000 / 700) = 14 reservations fit, and exactly those are admitted.
    expect(admittedOf(ts)).toBe(14);
    expect(ts.find((t) => !t.ok)).toMatchObject({ code: "quota_exceeded", window: "tokens-per-day" });
    // Settle or release each on the instance that admitted it; a third reads the result.
    const done = ts.map((t, i) => (t.ok ? { t, by: inst[i % 3].limiter } : undefined)).filter((x) => x !== undefined);
    await Promise.all(done.map(({ t, by }, i) => (i % 2 ? by.settle(t, { tokens: 200, provider: "offline" }) : by.release(t))));
    expect((await inst[2].limiter.remaining("tok")).tokens_today).toBe(10_000 - 7 * 200);
  });

  it("shares the global budget through leases without reserving past it", async () => {
    const { inst } = await instances({ global_tokens_per_day: 20_000 });
    const ts = await Promise.all(Array.from({ length: 60 }, (_, i) => inst[i % 3].limiter.admit({ user: `g${i}`, tokens: 500 })));
    const n = admittedOf(ts);
    expect(n * 500).toBeLessThanOrEqual(20_000);
    // At most one (shrinking) block per other instance can be stranded in a pool.
    expect(n).toBeGreaterThanOrEqual(32);
    expect(ts.find((t) => !t.ok)).toMatchObject({ code: "quota_exceeded", window: "global-tokens-per-day" });
    await Promise.all(inst.map((i) => i.limiter.close()));
    expect(await inst[0].limiter.limited()).toBe(n * 500 === 20_000);
  });

  it("publishes the threshold event once when instances race across it, and the stream dedupes a repeat", async () => {
    const before = await thresholdMessages();
    const { inst, emitted } = await instances({ user_per_minute: 100, user_per_hour: 10 });
    const ts = await Promise.all(Array.from({ length: 30 }, (_, i) => inst[i % 3].limiter.admit({ user: "racer", tokens: 1 })));
    expect(admittedOf(ts)).toBe(10);
    await Promise.all(inst.map((i) => i.events.flush()));
    const hourly = emitted.filter((e) => e.payload.threshold_type === "hourly");
    expect(hourly).toHaveLength(1);
    expect(hourly[0].payload).toMatchObject({ user: "racer", current: 8, limit: 10, scope: "user" });
    expect(hourly[0].id).toBe(thresholdEventId("user", "racer", "hourly", "2024-05-01T10:00:05.000Z"));
    expect(await thresholdMessages()).toBe(before + 1);
    // Another instance publishing the same crossing again (a retry) is dropped by Nats-Msg-Id.
    inst[2].events.emit("usage.threshold", hourly[0].payload as never, { id: hourly[0].id });
    await inst[2].events.flush();
    expect(await thresholdMessages()).toBe(before + 1);
  });
});
