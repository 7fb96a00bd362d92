// The sweep of finished days (lib/limiter/sweep.ts) over in-memory buckets: where a walk
// stops and resumes, what it keeps and what it leaves.
import { describe, expect, it } from "vitest";
import { encodeName } from "../lib/keys";
import { MemoryKv } from "../lib/kv";
import { calendar } from "../lib/limiter";
import { createHistory } from "../lib/limiter/history";
import { SWEEP_KEY, createSweeper } from "../lib/limiter/sweep";
import { silentLogger } from "../lib/log";

const enc = new TextEncoder();
const dec = new TextDecoder();
const day = (w: string, q = 1) => ({ w, q, u: 10 * q, p: { offline: [q, 10 * q] } });

function setup(iso: string) {
  const clock = { t: Date.parse(iso), now() { return this.t; } };
  const limits = new MemoryKv("LIMITS", clock);
  const usage = new MemoryKv("USAGE", clock);
  const log = silentLogger;
  const sweeper = createSweeper({
    scan: (f, from, max) => limits.scan(f, from, max),
    usage,
    history: createHistory(usage, log),
    calendar: calendar("UTC"),
    clock,
    log,
    settings: { batch: 2, idleMs: 0 },
  });
  const user = (name: string, d: object) => limits.put(`u.${encodeName(name)}`, enc.encode(JSON.stringify({ d: { n: 1, ...d } })));
  const channel = (name: string, d?: object) => limits.put(`c.${encodeName(name)}`, enc.encode(JSON.stringify(d ? { d } : { l: [1] })));
  const kept = async (w: string, scope: string, name: string) => {
    const e = await usage.get(`d.${w}.${scope}.${encodeName(name)}`);
    return e && JSON.parse(dec.decode(e.value));
  };
  const walk = async () => {
    for (let i = 0; i < 100; i++) if ((await sweeper.step()).done) return;
    throw new Error("no end");
  };
  return { clock, limits, usage, sweeper, user, channel, kept, walk };
}

describe("the sweep of finished days", () => {
  it("keeps days before the first open one and resumes there the next day", async () => {
    const s = setup("2024-03-02T12:00:00Z");
    await s.user("old", day("2024-03-01", 2));
    await s.channel("#quiet"); // no usage yet: passed over
    await s.user("today", day("2024-03-02"));
    await s.user("later", day("2024-03-01")); // written after an open day: next time
    await s.walk();
    expect(await s.kept("2024-03-01", "u", "old")).toEqual({ requests: 2, tokens: 20, by_provider: { offline: { requests: 2, tokens: 20 } } });
    expect(await s.kept("2024-03-01", "u", "later")).toBeNull();
    expect(await s.kept("2024-03-02", "u", "today")).toBeNull();
    // The same day again: nothing read.
    expect(await s.sweeper.step()).toEqual({ read: 0, kept: 0, done: true });
    s.clock.t += 86_400_000;
    await s.walk();
    expect(await s.kept("2024-03-02", "u", "today")).toMatchObject({ requests: 1 });
    expect(await s.kept("2024-03-01", "u", "later")).toMatchObject({ requests: 1 });
  });

  it("waits out the grace period after midnight before a day counts as finished", async () => {
    const s = setup("2024-03-02T00:05:00Z");
    await s.channel("#late", day("2024-03-01"));
    await s.walk();
    expect(await s.kept("2024-03-01", "c", "#late")).toBeNull();
    s.clock.t += 10 * 60_000;
    await s.walk();
    expect(await s.kept("2024-03-01", "c", "#late")).toMatchObject({ requests: 1, tokens: 10 });
  });

  it("passes over other keys, deletions, malformed documents and days ahead of the clock", async () => {
    const s = setup("2024-03-05T12:00:00Z");
    await s.limits.put("g.2024-03-01", enc.encode(JSON.stringify({ spent: 1, leases: {} })));
    await s.limits.put(`u.${encodeName("bad")}`, enc.encode("{not json"));
    await s.user("gone", day("2024-03-01"));
    await s.limits.delete(`u.${encodeName("gone")}`);
    await s.user("ahead", day("2024-03-09"));
    await s.user("fine", day("2024-03-04"));
    await s.walk();
    expect(await s.kept("2024-03-04", "u", "fine")).toMatchObject({ requests: 1 });
    expect((await s.usage.keys("d.>")).length).toBe(1);
  });

  it("starts over from a position it cannot read", async () => {
    const s = setup("2024-03-05T12:00:00Z");
    await s.user("u1", day("2024-03-01"));
    await s.usage.put(SWEEP_KEY, enc.encode("garbage"));
    await s.walk();
    expect(await s.kept("2024-03-01", "u", "u1")).toMatchObject({ requests: 1 });
    expect(JSON.parse(dec.decode((await s.usage.get(SWEEP_KEY))!.value))).toMatchObject({ done: "2024-03-05" });
  });
});
