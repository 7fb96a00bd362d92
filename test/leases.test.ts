// The global budget's leases over the in-memory bucket, with a clock the tests move: idle
// pools go back, an instance that stops renewing has its lease taken back by another, and
// nothing it spent is forgotten — also when it was only cut off and comes back.
import { describe, expect, it } from "vitest";
import { defaultConfig } from "../lib/config";
import type { Ticket } from "../lib/context";
import { MemoryKv } from "../lib/kv";
import { createLimiter, type RuntimeLimiter } from "../lib/limiter";
import { silentLogger } from "../lib/log";
import { createUsage } from "../lib/usage";

const BUDGET = 100_000;
const QUOTA = 10_000;
const DAY = "g.2024-05-01";

/** Instances over one bucket and one clock; `renews: false` makes one that never renews by itself (a frozen or dead process). */
function world() {
  const kv = new MemoryKv("LIMITS");
  const clock = { t: Date.parse("2024-05-01T10:00:00Z"), now() { return this.t; } };
  const config = defaultConfig({ limits: { global_tokens_per_day: BUDGET, user_tokens_per_day: QUOTA, exempt_users: ["ops"] } as never });
  const events = { emit: () => "", async flush() {} };
  const make = (name: string, renews = true) =>
    createLimiter({
      kv,
      config,
      clock,
      events,
      log: silentLogger,
      instance: name,
      leaseTokens: 5_000,
      leaseIdleMs: renews ? 20 : 3_600_000,
      heartbeatMs: renews ? 20 : 3_600_000,
    });
  const global = async () => JSON.parse(new TextDecoder().decode((await kv.get(DAY))!.value));
  return { kv, clock, config, make, global };
}

const ok = (t: Ticket) => {
  if (!t.ok) throw new Error(t.message);
  return t;
};
const spend = (tokens: number) => ({ tokens, provider: "offline" });
const until = async (cond: () => Promise<boolean>) => {
  for (let i = 0; i < 300 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 10));
};

describe("leases of the global budget", () => {
  it("an idle instance returns its unused lease, keeping only what is in flight", async () => {
    const { make, global } = world();
    const a = make("a");
    const t = ok(await a.admit({ user: "idle", tokens: 300 }));
    expect((await global()).leases.YQ.n).toBe(5_000);
    await until(async () => (await global()).leases.YQ?.n === 300);
    expect((await global()).leases.YQ.n).toBe(300);
    await a.settle(t, spend(100));
    await a.close();
    expect(await global()).toMatchObject({ spent: 100, leases: {} });
  });

  it("takes back the lease of an instance that died: its free pool and unsettled reservations return, its spend stays", async () => {
    const { make, clock, global, kv, config } = world();
    const dead = make("dead", false);
    const done = ok(await dead.admit({ user: "u1", tokens: 1_000 }));
    await dead.settle(done, spend(700));
    // A call in flight when the process dies: never settled, never released.
    ok(await dead.admit({ user: "u2", tokens: 2_000 }));
    const survivor = make("survivor");
    expect((await survivor.remaining("u2")).tokens_today).toBe(QUOTA - 2_000);
    // What anyone can still reserve (an exempt user sees the global budget alone).
    const left = async () => (await survivor.remaining("ops")).tokens_today;
    expect(await left()).toBe(BUDGET - 5_000);

    // Past the lease's expiry (30 s without renewal), reads count it as taken back at once...
    clock.t += 30_001;
    expect(await left()).toBe(BUDGET - 700);
    // ...and the next lease write of any instance takes it back in the bucket.
    const t = ok(await survivor.admit({ user: "u3", tokens: 1_000 }));
    await until(async () => survivor.stats.reclaimed === 1);
    const g = await global();
    expect(g.spent).toBe(700);
    expect(Object.keys(g.leases)).toEqual(["c3Vydml2b3I"]);
    // The user's reservation is gone too (the request deadline and its grace have passed).
    clock.t += 10_000;
    expect((await survivor.remaining("u2")).tokens_today).toBe(QUOTA);
    // The dead instance's spend is still in the service's totals.
    await survivor.settle(t, spend(50));
    const usage = createUsage({ kv, config, clock, log: silentLogger });
    expect(await usage.get({})).toMatchObject({ requests_today: 2, tokens_today: 750 });
  });

  it("an instance cut off past its lease continues under a new one, and what it settles late is still counted", async () => {
    const { make, clock, global, kv, config } = world();
    const stalled = make("stalled", false);
    const late = ok(await stalled.admit({ user: "s", tokens: 1_000 }));
    const other = make("other");
    clock.t += 30_001;
    ok(await other.admit({ user: "o", tokens: 1_000 }));
    await until(async () => other.stats.reclaimed === 1);
    expect((await global()).spent).toBe(0);

    // The stalled call finishes after all: its spend lands under a new lease, as an overdraft.
    await stalled.settle(late, spend(400));
    const again = ok(await stalled.admit({ user: "s", tokens: 100 }));
    await stalled.settle(again, spend(100));
    await stalled.close();
    const g = await global();
    expect(g.spent).toBe(500);
    expect(Object.keys(g.leases)).toEqual(["b3RoZXI"]);
    const usage = createUsage({ kv, config, clock, log: silentLogger });
    expect(await usage.get({})).toMatchObject({ requests_today: 2, tokens_today: 500 });
    // Nothing lost on the way: what is left is the budget less what was spent and what is in flight.
    expect((await other.remaining("ops")).tokens_today).toBe(BUDGET - 500 - 1_000);
  });

  it("a stalled instance stops serving from a lease it could not renew", async () => {
    const { make, clock } = world();
    const stalled: RuntimeLimiter = make("quiet", false);
    ok(await stalled.admit({ user: "q", tokens: 100 }));
    const leases = stalled.stats.leases;
    // 25 s on, within 10 s of its expiry: the next request renews before it is served.
    clock.t += 25_000;
    ok(await stalled.admit({ user: "q", tokens: 100 }));
    expect(stalled.stats.leases).toBe(leases + 1);
  });
});
