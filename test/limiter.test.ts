// Unit tests of the limiter over the in-memory bucket, with a clock the tests move.
import { describe, expect, it } from "vitest";
import { defaultConfig, type ConfigInput } from "../lib/config";
import type { Events, Ticket } from "../lib/context";
import { MemoryKv, createBatcher } from "../lib/kv";
import { calendar, createLimiter, thresholdEventId, type UserDoc } from "../lib/limiter";
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
const admitted = (t: Ticket) => {
  if (!ok(t)) throw new Error(`refused: ${t.message}`);
  return t;
};
const spend = (tokens: number) => ({ tokens, provider: "offline" });

describe("limiter: rolling windows", () => {
  it("refuses the eleventh request in 60 s with the contract's message, retrying when the oldest leaves", async () => {
    const { limiter, clock } = setup(limits({}), "2024-05-01T10:00:10Z");
    for (let i = 0; i < 5; i++) admitted(await limiter.admit({ user: "alice", tokens: 10 }));
    clock.t = Date.parse("2024-05-01T10:00:40Z");
    for (let i = 0; i < 5; i++) admitted(await limiter.admit({ user: "alice", tokens: 10 }));
    clock.t = Date.parse("2024-05-01T10:00:50.200Z");
    const t = await limiter.admit({ user: "alice", tokens: 10 });
    // The five of 10:00:10 leave the window at 10:01:10.
    expect(t).toMatchObject({ ok: false, code: "rate_limited", window: "per-minute", retry_after: 20 });
    if (!t.ok) expect(t.message).toBe("Rate limit exceeded (per-minute). Retry after 20 seconds.");
    clock.t = Date.parse("2024-05-01T10:01:10Z");
    expect((await limiter.admit({ user: "alice", tokens: 10 })).ok).toBe(true);
  });

  it("counts the last 60 s, not the clock minute: 10 at :59 leave none for :00", async () => {
    const { limiter, clock } = setup(limits({}), "2024-05-01T10:00:59.000Z");
    for (let i = 0; i < 10; i++) admitted(await limiter.admit({ user: "edge", tokens: 1 }));
    clock.t = Date.parse("2024-05-01T10:01:00.500Z");
    expect(await limiter.admit({ user: "edge", tokens: 1 })).toMatchObject({ ok: false, window: "per-minute", retry_after: 59 });
    expect((await limiter.remaining("edge")).per_minute).toBe(0);
    clock.t = Date.parse("2024-05-01T10:01:58.900Z");
    expect((await limiter.admit({ user: "edge", tokens: 1 })).ok).toBe(false);
    clock.t = Date.parse("2024-05-01T10:01:59.000Z");
    expect((await limiter.admit({ user: "edge", tokens: 1 })).ok).toBe(true);
  });

  it("holds the hour as a rolling 3,600 s across the hour mark", async () => {
    const { limiter, clock } = setup(limits({ user_per_minute: 100, user_per_hour: 6 }), "2024-05-01T10:50:00Z");
    for (let i = 0; i < 6; i++) admitted(await limiter.admit({ user: "h", tokens: 1 }));
    clock.t = Date.parse("2024-05-01T11:05:00Z");
    expect(await limiter.admit({ user: "h", tokens: 1 })).toMatchObject({ ok: false, window: "per-hour", retry_after: 45 * 60 });
    clock.t = Date.parse("2024-05-01T11:50:00Z");
    expect((await limiter.admit({ user: "h", tokens: 1 })).ok).toBe(true);
  });

  it("a refused request consumes nothing", async () => {
    const { limiter } = setup(limits({ user_per_minute: 2, user_per_hour: 100 }));
    await limiter.admit({ user: "bob", tokens: 5 });
    await limiter.admit({ user: "bob", tokens: 5 });
    for (let i = 0; i < 5; i++) expect((await limiter.admit({ user: "bob", tokens: 5 })).ok).toBe(false);
    expect(await limiter.remaining("bob")).toMatchObject({ per_minute: 0, per_hour: 98, per_day: 498, tokens_today: 50_000 - 10 });
  });

  it("retry_after names the window that admits last when several refuse", async () => {
    const { limiter } = setup(limits({ user_per_minute: 1, user_per_hour: 1 }), "2024-05-01T10:30:00Z");
    await limiter.admit({ user: "d", tokens: 1 });
    expect(await limiter.admit({ user: "d", tokens: 1 })).toMatchObject({ window: "per-hour", retry_after: 3600 });
  });

  it("day windows are calendar days in America/New_York", async () => {
    const { limiter, clock } = setup({ ...limits({ user_per_day: 1 }), timezone: "America/New_York" }, "2024-05-02T03:59:30Z");
    expect((await limiter.admit({ user: "e", tokens: 1 })).ok).toBe(true);
    expect(await limiter.admit({ user: "e", tokens: 1 })).toMatchObject({ ok: false, window: "per-day", retry_after: 30 });
    clock.t = Date.parse("2024-05-02T04:00:00Z");
    expect((await limiter.admit({ user: "e", tokens: 1 })).ok).toBe(true);
  });

  it("day windows are calendar days in Asia/Kolkata (UTC+5:30)", async () => {
    const { limiter, clock } = setup({ ...limits({ user_per_day: 1 }), timezone: "Asia/Kolkata" }, "2024-05-01T18:29:58Z");
    expect((await limiter.admit({ user: "f", tokens: 1 })).ok).toBe(true);
    expect(await limiter.admit({ user: "f", tokens: 1 })).toMatchObject({ ok: false, retry_after: 2 });
    clock.t = Date.parse("2024-05-01T18:30:00Z");
    expect((await limiter.admit({ user: "f", tokens: 1 })).ok).toBe(true);
  });

  it("a DST day is 25 hours long and retry_after counts to local midnight", async () => {
    // 2024-11-03 in New York: 00:00 EDT (04:00Z) to 00:00 EST on the 4th (05:00Z).
    const { limiter } = setup({ ...limits({ user_per_day: 1 }), timezone: "America/New_York" }, "2024-11-03T16:00:00Z");
    await limiter.admit({ user: "g", tokens: 1 });
    expect(await limiter.admit({ user: "g", tokens: 1 })).toMatchObject({ retry_after: 13 * 3600 });
  });

  it("keeps a user's log bounded by the larger of the minute and hour limits", async () => {
    const { limiter, kv, clock } = setup(limits({ user_per_minute: 50, user_per_hour: 5 }));
    for (let i = 0; i < 30; i++) {
      clock.t += 15 * 60_000;
      await limiter.admit({ user: "long", tokens: 1 });
    }
    const doc = JSON.parse(new TextDecoder().decode((await kv.get("u.bG9uZw"))!.value)) as UserDoc;
    expect(doc.l!.length).toBeLessThanOrEqual(50);
    expect(doc.l!.every((t) => t > clock.t - 3_600_000)).toBe(true);
  });
});

describe("limiter: limits above the exact log", () => {
  it("keeps the newest 300 admissions exact and older ones per minute, never admitting one too many", async () => {
    const { limiter, kv, clock } = setup(limits({ user_per_minute: 1_000_000, user_per_hour: 900, user_tokens_per_day: 1e9, user_per_day: 1e6 }), "2024-05-01T10:00:00.500Z");
    const first = clock.t;
    for (let i = 0; i < 900; i++) {
      admitted(await limiter.admit({ user: "flood", tokens: 1 }));
      clock.t += 3_900;
    }
    const doc = JSON.parse(new TextDecoder().decode((await kv.get("u.Zmxvb2Q"))!.value)) as UserDoc;
    expect(doc.l).toHaveLength(300);
    expect(doc.o!.length).toBeLessThanOrEqual(61);
    expect(doc.o!.reduce((n, [, c]) => n + c, 0)).toBe(600);
    const t = await limiter.admit({ user: "flood", tokens: 1 });
    // The oldest leaves the hour at first + 3,600 s; counted to the end of its minute, at most 60 s later.
    const exact = Math.ceil((first + 3_600_000 - clock.t) / 1000);
    expect(t).toMatchObject({ ok: false, window: "per-hour" });
    if (!t.ok) {
      expect(t.retry_after).toBeGreaterThanOrEqual(exact);
      expect(t.retry_after).toBeLessThanOrEqual(exact + 60);
    }
    expect((await limiter.remaining("flood")).per_hour).toBe(0);
  });
});

describe("limiter: channels, exemptions and names", () => {
  it("applies the channel limit across users and its per-channel override", async () => {
    const { limiter } = setup({ limits: { channel_per_hour: 5, channels: { "#quiet": { per_hour: 2 } } } as never });
    const counts = [];
    for (const channel of ["#busy", "#quiet"]) {
      let n = 0;
      for (let i = 0; i < 8; i++) if ((await limiter.admit({ user: `u${i}`, channel, tokens: 1 })).ok) n++;
      counts.push(n);
    }
    expect(counts).toEqual([5, 2]);
    expect(await limiter.admit({ user: "z", channel: "#quiet", tokens: 1 })).toMatchObject({
      ok: false,
      window: "channel-per-hour",
      retry_after: 3600,
    });
  });

  it("a channel refusal does not consume the user's windows", async () => {
    const { limiter } = setup(limits({ channel_per_hour: 1 }));
    await limiter.admit({ user: "x", channel: "#c", tokens: 1 });
    expect((await limiter.admit({ user: "y", channel: "#c", tokens: 100 })).ok).toBe(false);
    expect(await limiter.remaining("y")).toMatchObject({ per_minute: 10, tokens_today: 50_000 });
  });

  it("exempt users and channels are not limited, and remaining reports -1", async () => {
    const { limiter } = setup(limits({ user_per_minute: 1, channel_per_hour: 1, exempt_users: ["trivia-bot"], exempt_channels: ["#ops"] }));
    for (let i = 0; i < 5; i++) expect((await limiter.admit({ user: "trivia-bot", channel: "#x", tokens: 1 })).ok).toBe(true);
    for (let i = 0; i < 5; i++) expect((await limiter.admit({ user: "op", channel: "#ops", tokens: 1 })).ok).toBe(true);
    expect(await limiter.remaining("trivia-bot")).toMatchObject({ per_minute: -1, per_hour: -1, per_day: -1 });
    // The exempt user's requests did not count against #x.
    expect((await limiter.admit({ user: "someone", channel: "#x", tokens: 1 })).ok).toBe(true);
    expect((await limiter.admit({ user: "other", channel: "#x", tokens: 1 })).ok).toBe(false);
  });

  it("names that look like subjects never share counters", async () => {
    const { limiter } = setup(limits({ user_per_minute: 1, channel_per_hour: 1 }));
    const names = ["a", "a.b", "a.>", ">", "*", "a b", "🐈"];
    for (const n of names) expect((await limiter.admit({ user: n, channel: n, tokens: 1 })).ok).toBe(true);
    for (const n of names) expect((await limiter.admit({ user: n, tokens: 1 })).ok).toBe(false);
  });
});

describe("limiter: tokens", () => {
  it("reserves, settles to the real count and releases", async () => {
    const { limiter } = setup(limits({ user_tokens_per_day: 1_000 }));
    const a = admitted(await limiter.admit({ user: "t", tokens: 400 }));
    const b = admitted(await limiter.admit({ user: "t", tokens: 400 }));
    expect((await limiter.remaining("t")).tokens_today).toBe(200);
    await limiter.settle(a, spend(150));
    expect((await limiter.remaining("t")).tokens_today).toBe(450);
    await limiter.release(b);
    expect((await limiter.remaining("t")).tokens_today).toBe(850);
    // A second settle or release of the same ticket changes nothing.
    await limiter.settle(a, spend(150));
    await limiter.release(b);
    expect((await limiter.remaining("t")).tokens_today).toBe(850);
  });

  it("a refusal caused by reservations in flight says so and is short; one by spent quota waits for tomorrow", async () => {
    const { limiter } = setup(limits({ user_tokens_per_day: 1_000 }), "2024-05-01T10:00:00Z");
    const a = admitted(await limiter.admit({ user: "t", tokens: 600 }));
    admitted(await limiter.admit({ user: "t", tokens: 300 }));
    const held = await limiter.admit({ user: "t", tokens: 300 });
    // A's reservation is settled or taken back within the request deadline (30 s) + 10 s.
    expect(held).toMatchObject({ ok: false, code: "quota_exceeded", window: "tokens-per-day", retry_after: 40 });
    if (!held.ok) expect(held.message).toBe("Token quota exceeded (tokens-per-day, held by requests in flight). Retry after 40 seconds.");
    await limiter.settle(a, spend(650));
    const spent = await limiter.admit({ user: "t", tokens: 400 });
    expect(spent).toMatchObject({ ok: false, code: "quota_exceeded", retry_after: 14 * 3600 });
    if (!spent.ok) expect(spent.message).toBe("Token quota exceeded (tokens-per-day). Retry after 50400 seconds.");
  });

  it("a call that used more than it reserved is charged in full", async () => {
    const { limiter } = setup(limits({ user_tokens_per_day: 1_000 }));
    const a = admitted(await limiter.admit({ user: "t", tokens: 100 }));
    await limiter.settle(a, spend(1_200));
    expect((await limiter.remaining("t")).tokens_today).toBe(0);
    expect(await limiter.limited("t")).toBe(true);
    expect(await limiter.admit({ user: "t", tokens: 1 })).toMatchObject({ ok: false, code: "quota_exceeded" });
  });

  it("reserves what is left of a quota when that is at least `atLeast`", async () => {
    const { limiter } = setup(limits({ user_tokens_per_day: 1_000 }));
    admitted(await limiter.admit({ user: "y", tokens: 700 }));
    const t = admitted(await limiter.admit({ user: "y", tokens: 600, atLeast: 200 }));
    expect(t.reserved).toBe(300);
    expect(await limiter.admit({ user: "y", tokens: 600, atLeast: 1 })).toMatchObject({ ok: false, code: "quota_exceeded" });
  });

  it("extends a reservation against the quota, or refuses and leaves it as it was", async () => {
    const { limiter } = setup(limits({ user_tokens_per_day: 1_000 }));
    const a = admitted(await limiter.admit({ user: "x", tokens: 500 }));
    const more = admitted(await limiter.extend(a, 300));
    expect(more.reserved).toBe(800);
    expect((await limiter.remaining("x")).tokens_today).toBe(200);
    expect(await limiter.extend(more, 300)).toMatchObject({ ok: false, code: "quota_exceeded" });
    expect((await limiter.remaining("x")).tokens_today).toBe(200);
    await limiter.settle(more, spend(100));
    expect((await limiter.remaining("x")).tokens_today).toBe(900);
  });

  it("the global budget refuses across users and instances, never reserving past it", async () => {
    const kv = new MemoryKv("LIMITS");
    const cfg = limits({ global_tokens_per_day: 10_000, user_tokens_per_day: 1_000_000 });
    const a = setup(cfg, undefined, kv);
    const b = setup(cfg, undefined, kv);
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 ? a : b).limiter.admit({ user: `p${i}`, tokens: 300 })),
    );
    const n = results.filter((r) => r.ok).length;
    expect(n * 300).toBeLessThanOrEqual(10_000);
    // Leases strand at most one block per other instance (blocks ≤ 1/8 of what is left).
    expect(n).toBeGreaterThanOrEqual(28);
    // Nothing is spent yet: the budget is held by requests in flight, so the wait is short.
    expect(results.find((r) => !r.ok)).toMatchObject({ code: "quota_exceeded", window: "global-tokens-per-day", retry_after: 10 });
    // Once every call settled and both returned their pools, the day's total is what was used.
    await Promise.all(results.map((t, i) => (t.ok ? (i % 2 ? a : b).limiter.settle(t, spend(100)) : undefined)));
    await Promise.all([a.limiter.close(), b.limiter.close()]);
    const g = JSON.parse(new TextDecoder().decode((await kv.get("g.2024-05-01"))!.value));
    expect(g).toMatchObject({ spent: n * 100, leases: {} });
  });

  it("a budget spent by settled calls refuses until tomorrow; status is limited", async () => {
    const { limiter } = setup(limits({ global_tokens_per_day: 500 }), "2024-05-01T12:00:00Z");
    expect(await limiter.limited()).toBe(false);
    const t = admitted(await limiter.admit({ user: "q", tokens: 500 }));
    expect(await limiter.limited()).toBe(true);
    await limiter.settle(t, spend(450));
    expect(await limiter.admit({ user: "r", tokens: 100 })).toMatchObject({ ok: false, window: "global-tokens-per-day", retry_after: 12 * 3600 });
    expect((await limiter.remaining()).tokens_today).toBe(50);
  });

  it("takes back the reservation of a call that never settled once its deadline has passed", async () => {
    const { limiter, clock } = setup(limits({ user_tokens_per_day: 1_000 }));
    const lost = admitted(await limiter.admit({ user: "crash", tokens: 800 }));
    expect((await limiter.remaining("crash")).tokens_today).toBe(200);
    // The request deadline (30 s) and the grace (10 s) pass: the quota is whole again.
    clock.t += 40_001;
    expect((await limiter.remaining("crash")).tokens_today).toBe(1_000);
    admitted(await limiter.admit({ user: "crash", tokens: 900 }));
    // A call that finishes after all is charged in full.
    await limiter.settle(lost, spend(50));
    expect((await limiter.remaining("crash")).tokens_today).toBe(50);
  });
});

describe("limiter: threshold events", () => {
  it("fires once per user and type while the rolling hour stays above it, and again an hour later", async () => {
    const { limiter, events, clock } = setup(limits({ user_per_minute: 1000, user_per_hour: 10, user_per_day: 25 }), "2024-05-01T10:00:00Z");
    for (let i = 0; i < 10; i++) await limiter.admit({ user: "v", channel: "#c", tokens: 1 });
    const hourly = () => events.recorded.filter((e) => e.payload.threshold_type === "hourly" && e.payload.scope === "user");
    expect(hourly()).toHaveLength(1);
    expect(hourly()[0].payload).toMatchObject({ user: "v", current: 8, limit: 10, period: "2024-05-01T10:00:00.000Z" });
    expect(hourly()[0].id).toBe(thresholdEventId("user", "v", "hourly", "2024-05-01T10:00:00.000Z"));
    clock.t = Date.parse("2024-05-01T11:00:00Z");
    for (let i = 0; i < 10; i++) await limiter.admit({ user: "v", channel: "#c", tokens: 1 });
    const byType = (t: string) => events.recorded.filter((e) => e.payload.threshold_type === t && e.payload.scope === "user");
    expect(hourly()).toHaveLength(2);
    expect(byType("daily")).toHaveLength(1);
    expect(byType("daily")[0].payload).toMatchObject({ current: 20, limit: 25, period: "2024-05-01" });
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

  it("fires the token threshold on settled (real) usage, and the global one on settled spend", async () => {
    const { limiter, events } = setup(limits({ user_tokens_per_day: 1_000, global_tokens_per_day: 2_000 }));
    const a = admitted(await limiter.admit({ user: "k", tokens: 900 }));
    expect(events.recorded.filter((e) => e.payload.scope === "user")).toHaveLength(0);
    await limiter.settle(a, spend(850));
    const tok = events.recorded.filter((e) => e.payload.scope === "user" && e.payload.threshold_type === "tokens");
    expect(tok).toHaveLength(1);
    expect(tok[0].payload).toMatchObject({ current: 850, limit: 1_000, period: "2024-05-01" });
    const b = admitted(await limiter.admit({ user: "m", tokens: 900 }));
    // Reserved, not spent: no global event yet.
    expect(events.recorded.filter((e) => e.payload.scope === "global")).toHaveLength(0);
    await limiter.settle(b, spend(800));
    await limiter.close();
    const global = events.recorded.filter((e) => e.payload.scope === "global");
    expect(global).toHaveLength(1);
    expect(global[0].payload).toMatchObject({ current: 1_650, limit: 2_000, period: "2024-05-01" });
  });

  it("an event whose publish failed stays with its document and is published by the next writer", async () => {
    const kv = new MemoryKv("LIMITS");
    const cfg = limits({ user_per_minute: 100, user_per_hour: 5 });
    const a = setup(cfg, "2024-05-01T10:00:00Z", kv);
    // A's stream is down: every publish gives up.
    a.events.publish = () => Promise.reject(new Error("stream down"));
    for (let i = 0; i < 4; i++) await a.limiter.admit({ user: "lost", tokens: 1 });
    await new Promise((r) => setTimeout(r, 10));
    const stored = JSON.parse(new TextDecoder().decode((await kv.get("u.bG9zdA"))!.value)) as UserDoc;
    expect(stored.e).toHaveLength(1);
    const id = stored.e![0].id;
    // Another instance writes the same user's document after the grace period.
    const b = setup(cfg, "2024-05-01T10:00:31Z", kv);
    await b.limiter.admit({ user: "lost", tokens: 1 });
    await new Promise((r) => setTimeout(r, 10));
    expect(b.events.recorded.map((e) => e.id)).toEqual([id]);
    expect(b.events.recorded[0].payload).toMatchObject({ user: "lost", threshold_type: "hourly", current: 4, limit: 5 });
    // Acknowledged: the entry is gone from the document, and nobody publishes it again.
    const after = JSON.parse(new TextDecoder().decode((await kv.get("u.bG9zdA"))!.value)) as UserDoc;
    expect(after.e).toBeUndefined();
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
    expect(counts.filter((r) => r.per_minute === 9)).toHaveLength(5);
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

  it("never refuses on a stale cache: B admits after A released the tokens B saw as held", async () => {
    const kv = new MemoryKv("LIMITS");
    const cfg = limits({ user_tokens_per_day: 1_000 });
    const [a, b] = [setup(cfg, undefined, kv), setup(cfg, undefined, kv)];
    const held = admitted(await a.limiter.admit({ user: "q", tokens: 600 }));
    // B's remembered document now shows 900 of 1,000 tokens reserved.
    admitted(await b.limiter.admit({ user: "q", tokens: 300 }));
    await a.limiter.release(held);
    // On B's stale view 900 + 500 > 1,000; in the store only 300 are reserved.
    admitted(await b.limiter.admit({ user: "q", tokens: 500 }));
    expect(b.limiter.stats.refused).toBe(0);
  });

  it("a step that declines on a remembered document is re-decided on a fresh read", async () => {
    const kv = new MemoryKv("LIMITS");
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    const batcher = createBatcher(kv);
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

  it("warm user and channel keys cost no read: a call is two writes to admit and two to settle", async () => {
    const kv = new MemoryKv("LIMITS");
    const { limiter } = setup(limits({}), undefined, kv);
    const first = admitted(await limiter.admit({ user: "warm", channel: "#w", tokens: 50 }));
    await limiter.settle(first, spend(20));
    const gets = kv.ops.get;
    const writes = kv.ops.update + kv.ops.create;
    const t = admitted(await limiter.admit({ user: "warm", channel: "#w", tokens: 50 }));
    await limiter.settle(t, spend(30));
    expect(kv.ops.get - gets).toBe(0);
    // User and channel at admission (the first call's channel usage rides along); user
    // and this instance's spend at settle.
    expect(kv.ops.update + kv.ops.create - writes).toBe(4);
    expect(await limiter.remaining("warm")).toMatchObject({ per_minute: 8, tokens_today: 50_000 - 50 });
  });
});

describe("calendar: cached days", () => {
  it("answers within a day from the cache and recomputes past its end", () => {
    const cal = calendar("Europe/Berlin");
    const t = Date.parse("2024-03-31T12:00:00Z");
    const d = cal.day(t);
    expect(cal.day(t + 3_600_000)).toBe(d);
    // The spring-forward day is 23 hours long.
    expect(d.end - d.start).toBe(23 * 3_600_000);
    expect(cal.day(d.end).id).toBe("2024-04-01");
    // Back in time (a test clock) recomputes too.
    expect(cal.day(d.start - 1).id).toBe("2024-03-30");
    expect(cal.date(Date.parse("2024-03-31T22:30:00Z"))).toBe("2024-04-01");
    expect(cal.date(Date.parse("2024-03-31T21:30:00Z"))).toBe("2024-03-31");
  });

  it("computes UTC days without time zone data, as the time zone database has them", () => {
    const utc = calendar("UTC");
    const viaIntl = calendar("Etc/UTC");
    for (const iso of ["2024-02-28T23:59:59.999Z", "2024-02-29T00:00:00Z", "2023-12-31T23:59:59.999Z", "2024-07-01T12:34:56Z"]) {
      const t = Date.parse(iso);
      expect(utc.date(t)).toBe(viaIntl.date(t));
      expect(utc.day(t)).toEqual(viaIntl.day(t));
    }
    expect(utc.day(Date.parse("2024-02-29T05:00:00Z"))).toEqual({ id: "2024-02-29", start: Date.parse("2024-02-29T00:00:00Z"), end: Date.parse("2024-03-01T00:00:00Z") });
  });
});
