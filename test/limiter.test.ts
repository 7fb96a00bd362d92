// Unit tests of the limiter over the in-memory bucket, with a clock the tests move.
import { describe, expect, it } from "vitest";
import { defaultConfig, type ConfigInput } from "../lib/config";
import type { Events, Ticket } from "../lib/context";
import { MemoryKv } from "../lib/kv";
import { calendar, createLimiter, thresholdEventId } from "../lib/limiter";
import { createBatcher } from "../lib/limiter/cas";
import { silentLogger } from "../lib/log";
import type { EventName } from "../lib/schemas";

interface Recorded {
  name: EventName;
  payload: Record<string, unknown>;
  id: string;
}

function recordingEvents(): Events & { recorded: Recorded[] } {
  const recorded: Recorded[] = [];
  return {
    recorded,
    emit(name, payload, opts) {
      const id = opts?.id ?? `evt-${recorded.length}`;
      recorded.push({ name, payload: payload as Record<string, unknown>, id });
      return id;
    },
    async flush() {},
  };
}

const limits = (l: Partial<ConfigInput["limits"]> & object) => ({ limits: l as ConfigInput["limits"] });

function setup(over: Partial<ConfigInput> = {}, at = "2024-05-01T10:00:30Z", kv = new MemoryKv("LIMITS")) {
  const clock = { t: Date.parse(at), now() { return this.t; } };
  const events = recordingEvents();
  const config = defaultConfig(over);
  const limiter = createLimiter({ kv, config, clock, events, log: silentLogger, leaseIdleMs: 60_000 });
  return { kv, clock, events, limiter, config };
}

const ok = (t: Ticket): t is Ticket & { ok: true } => t.ok;

describe("limiter: request windows", () => {
  it("refuses the eighth request in a minute with the contract's message and retry_after", async () => {
    const { limiter } = setup(limits({ user_per_minute: 7 }), "2024-05-01T10:00:30.200Z");
    for (let i = 0; i < 7; i++) expect((await limiter.admit({ user: "alice", tokens: 10 })).ok).toBe(true);
    const t = await limiter.admit({ user: "alice", tokens: 10 });
    expect(t).toMatchObject({ ok: false, code: "rate_limited", window: "per-minute", retry_after: 30 });
    if (!t.ok) expect(t.message).toBe("Rate limit exceeded (per-minute). Retry after 30 seconds.");
  });

  it("a refused request consumes nothing", async () => {
    const { limiter } = setup(limits({ user_per_minute: 2, user_per_hour: 100 }));
    await limiter.admit({ user: "bob", tokens: 5 });
    await limiter.admit({ user: "bob", tokens: 5 });
    for (let i = 0; i < 5; i++) expect((await limiter.admit({ user: "bob", tokens: 5 })).ok).toBe(false);
    const r = await limiter.remaining("bob");
    expect(r).toMatchObject({ per_minute: 0, per_hour: 98, per_day: 498, tokens_today: 50_000 - 10 });
  });

  it("admits again when the minute rolls over, and counts the hour across minutes", async () => {
    const { limiter, clock } = setup(limits({ user_per_minute: 2, user_per_hour: 3 }), "2024-05-01T10:00:59Z");
    expect((await limiter.admit({ user: "c", tokens: 1 })).ok).toBe(true);
    expect((await limiter.admit({ user: "c", tokens: 1 })).ok).toBe(true);
    expect(await limiter.admit({ user: "c", tokens: 1 })).toMatchObject({ ok: false, retry_after: 1 });
    clock.t += 1_000; // 10:01:00
    expect((await limiter.admit({ user: "c", tokens: 1 })).ok).toBe(true);
    const t = await limiter.admit({ user: "c", tokens: 1 });
    expect(t).toMatchObject({ ok: false, window: "per-hour", retry_after: 59 * 60 });
    clock.t = Date.parse("2024-05-01T11:00:00Z");
    expect((await limiter.admit({ user: "c", tokens: 1 })).ok).toBe(true);
  });

  it("retry_after names the window that is free last when several refuse", async () => {
    const { limiter } = setup(limits({ user_per_minute: 1, user_per_hour: 1 }), "2024-05-01T10:30:00Z");
    await limiter.admit({ user: "d", tokens: 1 });
    expect(await limiter.admit({ user: "d", tokens: 1 })).toMatchObject({ window: "per-hour", retry_after: 1800 });
  });

  it("day windows are calendar days in America/New_York", async () => {
    // 23:59:30 EDT on 1 May = 03:59:30Z on 2 May.
    const { limiter, clock } = setup({ timezone: "America/New_York", ...limits({ user_per_day: 1 }) }, "2024-05-02T03:59:30Z");
    expect((await limiter.admit({ user: "e", tokens: 1 })).ok).toBe(true);
    expect(await limiter.admit({ user: "e", tokens: 1 })).toMatchObject({ ok: false, window: "per-day", retry_after: 30 });
    clock.t = Date.parse("2024-05-02T04:00:00Z"); // local midnight
    expect((await limiter.admit({ user: "e", tokens: 1 })).ok).toBe(true);
  });

  it("day windows are calendar days in Asia/Kolkata (UTC+5:30)", async () => {
    const { limiter, clock } = setup({ timezone: "Asia/Kolkata", ...limits({ user_per_day: 1 }) }, "2024-05-01T18:29:58.500Z");
    expect((await limiter.admit({ user: "f", tokens: 1 })).ok).toBe(true);
    expect(await limiter.admit({ user: "f", tokens: 1 })).toMatchObject({ ok: false, retry_after: 2 });
    clock.t = Date.parse("2024-05-01T18:30:00Z");
    expect((await limiter.admit({ user: "f", tokens: 1 })).ok).toBe(true);
  });

  it("a DST day is 25 hours long and retry_after counts to local midnight", async () => {
    // 2024-11-03 in New York: clocks go back at 02:00; the day ends 2024-11-04T05:00Z.
    const cal = calendar("America/New_York");
    const d = cal.day(Date.parse("2024-11-03T12:00:00Z"));
    expect(d.end - d.start).toBe(25 * 3_600_000);
    const { limiter } = setup({ timezone: "America/New_York", ...limits({ user_per_day: 1 }) }, "2024-11-03T16:00:00Z");
    await limiter.admit({ user: "g", tokens: 1 });
    expect(await limiter.admit({ user: "g", tokens: 1 })).toMatchObject({ retry_after: 13 * 3600 });
  });

  it("hour windows follow the local hour mark in a half-hour zone", async () => {
    const { limiter, clock } = setup({ timezone: "Asia/Kolkata", ...limits({ user_per_hour: 1 }) }, "2024-05-01T10:29:00Z");
    await limiter.admit({ user: "h", tokens: 1 });
    expect(await limiter.admit({ user: "h", tokens: 1 })).toMatchObject({ window: "per-hour", retry_after: 60 });
    clock.t = Date.parse("2024-05-01T10:30:00Z"); // 16:00 IST
    expect((await limiter.admit({ user: "h", tokens: 1 })).ok).toBe(true);
  });
});

describe("limiter: channels, exemptions and names", () => {
  it("applies the channel limit across users and its per-channel override", async () => {
    const { limiter } = setup(limits({ channel_per_hour: 3, channels: { "#busy": { per_hour: 5 } } }), "2024-05-01T10:15:00Z");
    const admitted = async (channel: string) => {
      let n = 0;
      for (let i = 0; i < 8; i++) if ((await limiter.admit({ user: `u${i}`, channel, tokens: 1 })).ok) n++;
      return n;
    };
    expect(await admitted("#quiet")).toBe(3);
    expect(await admitted("#busy")).toBe(5);
    expect(await limiter.admit({ user: "z", channel: "#quiet", tokens: 1 })).toMatchObject({
      code: "rate_limited",
      window: "channel-per-hour",
      retry_after: 45 * 60,
    });
  });

  it("a channel refusal does not consume the user's windows", async () => {
    const { limiter } = setup(limits({ channel_per_hour: 1 }));
    await limiter.admit({ user: "x", channel: "#c", tokens: 1 });
    expect((await limiter.admit({ user: "y", channel: "#c", tokens: 100 })).ok).toBe(false);
    expect(await limiter.remaining("y")).toMatchObject({ per_minute: 10, per_hour: 100, tokens_today: 50_000 });
  });

  it("exempt users and channels are not limited, and remaining reports -1", async () => {
    const { limiter } = setup(limits({ user_per_minute: 1, channel_per_hour: 1, exempt_users: ["trivia-bot"], exempt_channels: ["#ops"] }));
    for (let i = 0; i < 5; i++) expect((await limiter.admit({ user: "trivia-bot", channel: "#x", tokens: 1 })).ok).toBe(true);
    for (let i = 0; i < 5; i++) expect((await limiter.admit({ user: "op", channel: "#ops", tokens: 1 })).ok).toBe(true);
    expect((await limiter.remaining("trivia-bot")).per_minute).toBe(-1);
    expect(await limiter.limited("trivia-bot")).toBe(false);
    // Exempt requests are not counted: #x still has its one request for someone else.
    expect((await limiter.admit({ user: "someone", channel: "#x", tokens: 1 })).ok).toBe(true);
    expect((await limiter.admit({ user: "other", channel: "#x", tokens: 1 })).ok).toBe(false);
  });

  it("names that look like subjects never share counters", async () => {
    const { limiter, kv } = setup(limits({ user_per_minute: 1, channel_per_hour: 1 }));
    const names = [">", "*", "a.b", "a", "a.>", "a b", "🦊", "#rosey"];
    for (const n of names) expect((await limiter.admit({ user: n, channel: n, tokens: 1 })).ok).toBe(true);
    for (const n of names) expect((await limiter.admit({ user: n, tokens: 1 })).ok).toBe(false);
    const keys = await kv.keys();
    expect(keys.filter((k) => k.startsWith("u.")).length).toBe(names.length);
    expect(keys.filter((k) => k.startsWith("c.")).length).toBe(names.length);
    for (const k of keys) expect(k).toMatch(/^[ucg]\.[A-Za-z0-9_=-]+$/);
  });
});

describe("limiter: tokens", () => {
  it("reserves, settles to the real count and releases", async () => {
    const { limiter } = setup(limits({ user_tokens_per_day: 1_000 }));
    const a = await limiter.admit({ user: "t", tokens: 400 });
    const b = await limiter.admit({ user: "t", tokens: 400 });
    expect((await limiter.remaining("t")).tokens_today).toBe(200);
    expect(await limiter.admit({ user: "t", tokens: 300 })).toMatchObject({
      ok: false,
      code: "quota_exceeded",
      window: "tokens-per-day",
      message: expect.stringMatching(/^Token quota exceeded \(tokens-per-day\)\. Retry after \d+ seconds\.$/),
    });
    if (!ok(a) || !ok(b)) throw new Error("admit failed");
    await limiter.settle(a, 150);
    expect((await limiter.remaining("t")).tokens_today).toBe(450);
    await limiter.release(b);
    expect((await limiter.remaining("t")).tokens_today).toBe(850);
    // A second settle or release of the same ticket changes nothing.
    await limiter.settle(a, 150);
    await limiter.release(b);
    expect((await limiter.remaining("t")).tokens_today).toBe(850);
  });

  it("a call that used more than it reserved is charged in full", async () => {
    const { limiter } = setup(limits({ user_tokens_per_day: 1_000 }));
    const a = await limiter.admit({ user: "t", tokens: 100 });
    if (!ok(a)) throw new Error("admit failed");
    await limiter.settle(a, 1_200);
    expect((await limiter.remaining("t")).tokens_today).toBe(0);
    expect(await limiter.limited("t")).toBe(true);
    expect(await limiter.admit({ user: "t", tokens: 1 })).toMatchObject({ ok: false, code: "quota_exceeded" });
  });

  it("the global budget refuses across users and instances, never reserving past it", async () => {
    const kv = new MemoryKv("LIMITS");
    const cfg = limits({ global_tokens_per_day: 10_000, user_tokens_per_day: 1_000_000 });
    const a = setup(cfg, undefined, kv);
    const b = setup(cfg, undefined, kv);
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 ? a : b).limiter.admit({ user: `p${i}`, tokens: 300 })),
    );
    const admitted = results.filter((r) => r.ok).length;
    // 33 × 300 = 9,900 ≤ 10,000: every admission is backed by granted budget.
    expect(admitted * 300).toBeLessThanOrEqual(10_000);
    // Leases strand at most one block per other instance (blocks ≤ 1/8 of what is left).
    expect(admitted).toBeGreaterThanOrEqual(28);
    const refused = results.find((r) => !r.ok);
    expect(refused).toMatchObject({ code: "quota_exceeded", window: "global-tokens-per-day" });
    // Once both return their pools, everything granted is accounted for.
    await Promise.all([a.limiter.close(), b.limiter.close()]);
    const g = await kv.get("g.2024-05-01");
    expect(JSON.parse(new TextDecoder().decode(g!.value)).granted).toBe(admitted * 300);
  });

  it("status is limited when the global budget is spent", async () => {
    const { limiter } = setup(limits({ global_tokens_per_day: 500 }));
    expect(await limiter.limited()).toBe(false);
    const t = await limiter.admit({ user: "q", tokens: 500 });
    expect(t.ok).toBe(true);
    expect(await limiter.limited()).toBe(true);
    expect((await limiter.remaining()).tokens_today).toBe(0);
  });
});

describe("limiter: threshold events", () => {
  it("fires once per user, type and period when usage crosses the threshold", async () => {
    const { limiter, events, clock } = setup(limits({ user_per_minute: 1000, user_per_hour: 10, user_per_day: 20 }), "2024-05-01T10:00:00Z");
    for (let i = 0; i < 10; i++) await limiter.admit({ user: "v", channel: "#c", tokens: 1 });
    const hourly = events.recorded.filter((e) => e.payload.threshold_type === "hourly" && e.payload.scope === "user");
    expect(hourly).toHaveLength(1);
    expect(hourly[0].payload).toMatchObject({ user: "v", current: 8, limit: 10, period: "2024-05-01T10:00:00.000Z" });
    expect(hourly[0].id).toBe(thresholdEventId("user", "v", "hourly", "2024-05-01T10:00:00.000Z"));
    clock.t = Date.parse("2024-05-01T11:00:00Z");
    for (let i = 0; i < 10; i++) await limiter.admit({ user: "v", channel: "#c", tokens: 1 });
    const byType = (t: string) => events.recorded.filter((e) => e.payload.threshold_type === t && e.payload.scope === "user");
    expect(byType("hourly")).toHaveLength(2);
    expect(byType("daily")).toHaveLength(1);
    expect(byType("daily")[0].payload).toMatchObject({ current: 16, limit: 20, period: "2024-05-01" });
  });

  it("fires once when three instances race across the threshold", async () => {
    const kv = new MemoryKv("LIMITS");
    const cfg = limits({ user_per_minute: 100, user_per_hour: 100, channel_per_hour: 50 });
    const inst = [setup(cfg, undefined, kv), setup(cfg, undefined, kv), setup(cfg, undefined, kv)];
    await Promise.all(Array.from({ length: 60 }, (_, i) => inst[i % 3].limiter.admit({ user: `w${i % 4}`, channel: "#race", tokens: 1 })));
    const all = inst.flatMap((s) => s.events.recorded).filter((e) => e.payload.scope === "channel");
    expect(all).toHaveLength(1);
    expect(all[0].payload).toMatchObject({ channel: "#race", threshold_type: "hourly", current: 40, limit: 50 });
  });

  it("fires the token threshold on settled (real) usage, and the global one on leases", async () => {
    const { limiter, events } = setup(limits({ user_tokens_per_day: 1_000, global_tokens_per_day: 2_000 }));
    const a = await limiter.admit({ user: "k", tokens: 900 });
    expect(events.recorded.filter((e) => e.payload.scope === "user")).toHaveLength(0);
    if (!ok(a)) throw new Error("admit failed");
    await limiter.settle(a, 850);
    const tok = events.recorded.filter((e) => e.payload.scope === "user" && e.payload.threshold_type === "tokens");
    expect(tok).toHaveLength(1);
    expect(tok[0].payload).toMatchObject({ current: 850, limit: 1_000, period: "2024-05-01" });
    const b = await limiter.admit({ user: "m", tokens: 900 });
    expect(b.ok).toBe(true);
    expect(events.recorded.filter((e) => e.payload.scope === "global")).toHaveLength(1);
  });
});

describe("limiter: concurrency on one bucket", () => {
  it("admits exactly the limit from 40 concurrent requests over 3 instances", async () => {
    const kv = new MemoryKv("LIMITS");
    const cfg = limits({ user_per_minute: 7 });
    const inst = [setup(cfg, undefined, kv), setup(cfg, undefined, kv), setup(cfg, undefined, kv)];
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => inst[i % 3].limiter.admit({ user: "hot", tokens: 10 })));
    expect(results.filter((r) => r.ok)).toHaveLength(7);
    expect((await inst[0].limiter.remaining("hot")).per_hour).toBe(93);
  });

  it("rolls back the user's count when the channel fills during a race", async () => {
    const kv = new MemoryKv("LIMITS");
    const cfg = limits({ channel_per_hour: 5 });
    const inst = [setup(cfg, undefined, kv), setup(cfg, undefined, kv)];
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => inst[i % 2].limiter.admit({ user: `r${i}`, channel: "#r", tokens: 1 })));
    expect(results.filter((r) => r.ok)).toHaveLength(5);
    const counts = await Promise.all(results.map((_, i) => inst[0].limiter.remaining(`r${i}`)));
    const used = counts.filter((r) => r.per_minute === 9).length;
    expect(used).toBe(5);
  });
});

/** The in-memory bucket with writes that take a round trip, as on a server. */
class SlowWriteKv extends MemoryKv {
  private later = () => new Promise((r) => setTimeout(r, 1));
  override async create(key: string, value: Uint8Array) {
    await this.later();
    return super.create(key, value);
  }
  override async update(key: string, value: Uint8Array, revision: number) {
    await this.later();
    return super.update(key, value, revision);
  }
}

describe("limiter: group commit", () => {
  it("writes a burst for one user in few CAS writes and counts every request", async () => {
    // Writes take time, as on a server: requests arriving while one is in flight join the next.
    const { limiter, kv } = setup(limits({ user_per_minute: 1_000, user_per_hour: 1_000, user_per_day: 1_000 }), undefined, new SlowWriteKv("LIMITS"));
    const results = await Promise.all(Array.from({ length: 100 }, () => limiter.admit({ user: "burst", tokens: 1 })));
    expect(results.every((r) => r.ok)).toBe(true);
    expect((await limiter.remaining("burst")).per_minute).toBe(900);
    expect(kv.ops.create + kv.ops.update).toBeLessThan(20);
  });

  it("stays exact at the limit inside one batch", async () => {
    const { limiter } = setup(limits({ user_per_minute: 7 }));
    const results = await Promise.all(Array.from({ length: 40 }, () => limiter.admit({ user: "batch", tokens: 1 })));
    expect(results.filter((r) => r.ok)).toHaveLength(7);
  });
});

describe("limiter: a failing bucket", () => {
  it("rejects the admission and undoes the write that did go through", async () => {
    const inner = new MemoryKv("LIMITS");
    // Writes to channel documents fail with a non-CAS error (e.g. a timeout).
    const failing = Object.assign(Object.create(inner) as MemoryKv, {
      create: (k: string, v: Uint8Array) => (k.startsWith("c.") ? Promise.reject(new Error("timeout")) : inner.create(k, v)),
      update: (k: string, v: Uint8Array, r: number) => (k.startsWith("c.") ? Promise.reject(new Error("timeout")) : inner.update(k, v, r)),
    });
    const { limiter } = setup(limits({}), undefined, failing);
    await expect(limiter.admit({ user: "f", channel: "#down", tokens: 10 })).rejects.toThrow("timeout");
    expect(await limiter.remaining("f")).toMatchObject({ per_minute: 10, per_hour: 100, tokens_today: 50_000 });
  });
});

describe("limiter: leases", () => {
  it("an idle instance returns its unused lease to the global budget", async () => {
    const kv = new MemoryKv("LIMITS");
    const clock = { now: () => Date.parse("2024-05-01T10:00:00Z") };
    const config = defaultConfig(limits({ global_tokens_per_day: 100_000 }));
    const limiter = createLimiter({ kv, config, clock, events: recordingEvents(), log: silentLogger, leaseTokens: 5_000, leaseIdleMs: 20 });
    const t = await limiter.admit({ user: "idle", tokens: 300 });
    const granted = async () => JSON.parse(new TextDecoder().decode((await kv.get("g.2024-05-01"))!.value)).granted;
    expect(await granted()).toBe(5_000);
    // Only the outstanding reservation stays granted once the idle timer has run.
    for (let i = 0; i < 500 && (await granted()) !== 300; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await granted()).toBe(300);
    if (t.ok) await limiter.settle(t, 100);
    await limiter.close();
    expect(await granted()).toBe(100);
  });
});

describe("limiter: remaining with a channel", () => {
  it("reports the tighter of the user's and the channel's hour", async () => {
    const { limiter } = setup(limits({ channel_per_hour: 4 }));
    await limiter.admit({ user: "a", channel: "#c", tokens: 1 });
    await limiter.admit({ user: "b", channel: "#c", tokens: 1 });
    expect(await limiter.remaining("a", "#c")).toMatchObject({ per_minute: 9, per_hour: 2 });
    expect(await limiter.remaining(undefined, "#c")).toMatchObject({ per_hour: 2 });
    // An unused channel leaves its whole hour (4), still tighter than the user's 99.
    expect(await limiter.remaining("a", "#other")).toMatchObject({ per_hour: 4 });
    expect(await limiter.remaining("a")).toMatchObject({ per_hour: 99 });
  });
});

describe("limiter: remembered documents", () => {
  it("two instances alternating admits on one user admit exactly the limit", async () => {
    const kv = new MemoryKv("LIMITS");
    const cfg = limits({ user_per_minute: 7 });
    const [a, b] = [setup(cfg, undefined, kv), setup(cfg, undefined, kv)];
    // One after another, so each instance's remembered document is stale on every turn
    // (the other wrote last): its CAS must fail and re-read, never count on old figures.
    const oks: boolean[] = [];
    for (let i = 0; i < 20; i++) oks.push((await (i % 2 ? b : a).limiter.admit({ user: "alt", tokens: 1 })).ok);
    expect(oks.filter(Boolean)).toHaveLength(7);
    expect(oks.slice(0, 7).every(Boolean)).toBe(true);
    expect((await a.limiter.remaining("alt")).per_hour).toBe(93);
    expect(a.limiter.stats.casRetries + b.limiter.stats.casRetries).toBeGreaterThan(0);
  });

  it("stays exact when two instances race with warm, stale caches", async () => {
    const kv = new MemoryKv("LIMITS");
    const cfg = limits({ user_per_minute: 1_000, user_per_hour: 25 });
    const [a, b] = [setup(cfg, undefined, kv), setup(cfg, undefined, kv)];
    await a.limiter.admit({ user: "race", tokens: 1 });
    await b.limiter.admit({ user: "race", tokens: 1 });
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? b : a).limiter.admit({ user: "race", tokens: 1 })));
    expect(results.filter((r) => r.ok)).toHaveLength(23);
  });

  it("never refuses on a stale cache: B admits after A released the tokens B saw as spent", async () => {
    const kv = new MemoryKv("LIMITS");
    const cfg = limits({ user_tokens_per_day: 1_000 });
    const [a, b] = [setup(cfg, undefined, kv), setup(cfg, undefined, kv)];
    const held = await a.limiter.admit({ user: "q", tokens: 600 });
    expect(held.ok).toBe(true);
    // B's remembered document now shows 900 of 1,000 tokens reserved.
    const mine = await b.limiter.admit({ user: "q", tokens: 300 });
    expect(mine.ok).toBe(true);
    if (held.ok) await a.limiter.release(held);
    // On B's stale view 900 + 500 > 1,000; in the store only 300 are reserved.
    const t = await b.limiter.admit({ user: "q", tokens: 500 });
    expect(t.ok).toBe(true);
    expect(b.limiter.stats.refused).toBe(0);
  });

  it("a step that declines on a remembered document is re-decided on a fresh read", async () => {
    const kv = new MemoryKv("LIMITS");
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    const batcher = createBatcher(kv, () => {});
    const rev = await kv.create("k", enc({ n: 5 }));
    await batcher.read("k");
    // Another instance lowers the count; this instance still remembers 5.
    await kv.update("k", enc({ n: 1 }), rev);
    const inc = (cur: { n: number } | undefined) => (cur!.n + 1 > 5 ? { value: undefined, result: false } : { value: { n: cur!.n + 1 }, result: true });
    const out = await batcher.submit("k", batcher.tick(), inc);
    expect(out).toMatchObject({ result: true, wrote: true, doc: { value: { n: 2 } } });
  });

  it("reads a key first again once another instance has written it under us", async () => {
    const kv = new MemoryKv("LIMITS");
    const [a, b] = [setup(limits({}), undefined, kv), setup(limits({}), undefined, kv)];
    await a.limiter.admit({ user: "shared", tokens: 1 });
    await b.limiter.admit({ user: "shared", tokens: 1 });
    // A's memory is stale: its write conflicts, and from then on it reads before deciding.
    await a.limiter.admit({ user: "shared", tokens: 1 });
    expect(a.limiter.stats.casRetries).toBe(1);
    await b.limiter.admit({ user: "shared", tokens: 1 });
    await a.limiter.admit({ user: "shared", tokens: 1 });
    expect(a.limiter.stats.casRetries).toBe(1);
    expect((await a.limiter.remaining("shared")).per_minute).toBe(5);
  });

  it("a refusal checked against the store: a full window seen in memory is re-read once", async () => {
    const kv = new MemoryKv("LIMITS");
    const { limiter } = setup(limits({ user_per_minute: 2 }), undefined, kv);
    await limiter.admit({ user: "full", tokens: 1 });
    await limiter.admit({ user: "full", tokens: 1 });
    const before = kv.ops.get;
    expect((await limiter.admit({ user: "full", tokens: 1 })).ok).toBe(false);
    expect(kv.ops.get - before).toBe(1);
  });

  it("a warm user key costs no read: only the channel is read, and settle is one CAS", async () => {
    const kv = new MemoryKv("LIMITS");
    const { limiter } = setup(limits({}), undefined, kv);
    const first = await limiter.admit({ user: "warm", channel: "#w", tokens: 50 });
    if (first.ok) await limiter.settle(first, 20);
    const gets = kv.ops.get;
    const writes = kv.ops.update + kv.ops.create;
    const t = await limiter.admit({ user: "warm", channel: "#w", tokens: 50 });
    expect(t.ok).toBe(true);
    if (t.ok) await limiter.settle(t, 30);
    // The channel's document (read on every admission); the user's comes from memory.
    expect(kv.ops.get - gets).toBe(1);
    // User admit, channel admit, user settle.
    expect(kv.ops.update + kv.ops.create - writes).toBe(3);
    expect(await limiter.remaining("warm")).toMatchObject({ per_minute: 8, tokens_today: 50_000 - 50 });
  });
});

describe("calendar: cached windows", () => {
  it("answers within a minute from the cache and recomputes past its end", () => {
    const cal = calendar("Europe/Berlin");
    const t = Date.parse("2024-03-31T00:59:10Z"); // one minute before the spring-forward jump
    const w = cal.windows(t);
    expect(cal.windows(t + 40_000)).toBe(w);
    const next = cal.windows(t + 50_000); // 01:00:00Z = 03:00 CEST
    expect(next).not.toBe(w);
    expect(next.hour.start).toBe(Date.parse("2024-03-31T01:00:00Z"));
    expect(next.day).toEqual(w.day);
    // Back in time (a test clock) recomputes too.
    expect(cal.windows(t - 60_000).minute.start).toBe(Date.parse("2024-03-31T00:58:00Z"));
    expect(cal.date(Date.parse("2024-03-31T22:30:00Z"))).toBe("2024-04-01");
    expect(cal.date(Date.parse("2024-03-31T21:30:00Z"))).toBe("2024-03-31");
  });
});
