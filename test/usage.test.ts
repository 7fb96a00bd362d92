// Usage counters (in-memory bucket and a real nats-server) and the rosey.llm.usage handler.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultConfig, type ConfigInput } from "../lib/config";
import { MemoryKv } from "../lib/kv";
import { createLimiter } from "../lib/limiter";
import { silentLogger } from "../lib/log";
import { UsageResponse } from "../lib/schemas";
import { createUsage } from "../lib/usage";
import { handle } from "../handlers/usage";
import { natsKv } from "../runtime/kv";
import { startNatsServer, type NatsServer } from "../runtime/nats-server";
import { createTestContext } from "./helpers/context";

const clockAt = (iso: string) => ({ t: Date.parse(iso), now() { return this.t; } });

describe("usage counters", () => {
  it("counts requests and tokens per user, channel, provider and service", async () => {
    const kv = new MemoryKv("USAGE");
    const usage = createUsage({ kv, config: defaultConfig(), clock: clockAt("2024-05-01T12:00:00Z"), log: silentLogger, instance: "i1" });
    await usage.record({ user: "ann", channel: "#a", provider: "offline", tokens: 10 });
    await usage.record({ user: "ann", channel: "#b", provider: "openai", tokens: 5 });
    await usage.record({ user: "ben", channel: "#a", provider: "offline", tokens: 7 });
    await usage.record({ provider: "offline", tokens: 1 });
    expect(await usage.get({ user: "ann" })).toMatchObject({ requests_today: 2, tokens_today: 15 });
    expect(await usage.get({ channel: "#a" })).toMatchObject({ requests_today: 2, tokens_today: 17 });
    expect(await usage.get({})).toEqual({
      requests_today: 4,
      tokens_today: 23,
      by_provider: { offline: { requests: 3, tokens: 18 }, openai: { requests: 1, tokens: 5 } },
    });
    expect(await usage.get({ user: "nobody" })).toMatchObject({ requests_today: 0, tokens_today: 0 });
  });

  it("keeps `a`, `a.b`, `>` and `*` apart", async () => {
    const kv = new MemoryKv("USAGE");
    const usage = createUsage({ kv, config: defaultConfig(), clock: clockAt("2024-05-01T12:00:00Z"), log: silentLogger });
    const names = ["a", "a.b", ">", "*"];
    for (const [i, n] of names.entries()) for (let j = 0; j <= i; j++) await usage.record({ user: n, channel: n, provider: "offline", tokens: 1 });
    for (const [i, n] of names.entries()) {
      expect((await usage.get({ user: n })).requests_today).toBe(i + 1);
      expect((await usage.get({ channel: n })).requests_today).toBe(i + 1);
    }
  });

  it("starts a new day at local midnight of the configured zone", async () => {
    const kv = new MemoryKv("USAGE");
    const clock = clockAt("2024-05-01T18:29:00Z"); // 23:59 in Kolkata
    const usage = createUsage({ kv, config: defaultConfig({ timezone: "Asia/Kolkata" }), clock, log: silentLogger });
    await usage.record({ user: "k", provider: "offline", tokens: 3 });
    expect((await usage.get({})).requests_today).toBe(1);
    clock.t = Date.parse("2024-05-01T18:30:00Z");
    expect(await usage.get({})).toMatchObject({ requests_today: 0, tokens_today: 0 });
    expect(await usage.get({ user: "k" })).toMatchObject({ requests_today: 0 });
  });

  it("coalesces a burst into few writes without losing any count", async () => {
    const kv = new MemoryKv("USAGE");
    const usage = createUsage({ kv, config: defaultConfig(), clock: clockAt("2024-05-01T12:00:00Z"), log: silentLogger });
    await Promise.all(Array.from({ length: 200 }, (_, i) => usage.record({ user: `u${i % 5}`, channel: "#busy", provider: "offline", tokens: 2 })));
    expect(await usage.get({})).toMatchObject({ requests_today: 200, tokens_today: 400 });
    expect(await usage.get({ channel: "#busy" })).toMatchObject({ requests_today: 200 });
    expect(await usage.get({ user: "u3" })).toMatchObject({ requests_today: 40, tokens_today: 80 });
    expect(kv.ops.create + kv.ops.update).toBeLessThan(60);
  });
});

describe("usage counters: remembered documents", () => {
  it("a warm key is written without a read; its own shard never needs one", async () => {
    const kv = new MemoryKv("USAGE");
    const usage = createUsage({ kv, config: defaultConfig(), clock: clockAt("2024-05-01T12:00:00Z"), log: silentLogger, instance: "i1" });
    await usage.record({ user: "ann", channel: "#a", provider: "offline", tokens: 10 });
    const gets = kv.ops.get;
    for (let i = 0; i < 5; i++) await usage.record({ user: "ann", channel: "#a", provider: "offline", tokens: 10 });
    expect(kv.ops.get - gets).toBe(0);
    expect(await usage.get({ user: "ann" })).toMatchObject({ requests_today: 6, tokens_today: 60 });
    expect(await usage.get({})).toMatchObject({ requests_today: 6, tokens_today: 60 });
  });

  it("two instances on one user lose no count: a stale document only costs a read", async () => {
    const kv = new MemoryKv("USAGE");
    const mk = (instance: string) => createUsage({ kv, config: defaultConfig(), clock: clockAt("2024-05-01T12:00:00Z"), log: silentLogger, instance });
    const [a, b] = [mk("a"), mk("b")];
    for (let i = 0; i < 10; i++) await (i % 2 ? b : a).record({ user: "shared", channel: "#s", provider: "offline", tokens: 1 });
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? b : a).record({ user: "shared", channel: "#s", provider: "offline", tokens: 1 })));
    expect(await a.get({ user: "shared" })).toMatchObject({ requests_today: 50, tokens_today: 50 });
    expect(await b.get({ channel: "#s" })).toMatchObject({ requests_today: 50 });
    expect(await b.get({})).toMatchObject({ requests_today: 50, tokens_today: 50 });
  });

  it("reads a key before writing again once another instance has written it under us", async () => {
    const kv = new MemoryKv("USAGE");
    const mk = (instance: string) => createUsage({ kv, config: defaultConfig(), clock: clockAt("2024-05-01T12:00:00Z"), log: silentLogger, instance });
    const [a, b] = [mk("a"), mk("b")];
    await a.record({ channel: "#c", provider: "offline", tokens: 1 });
    await b.record({ channel: "#c", provider: "offline", tokens: 1 });
    await a.record({ channel: "#c", provider: "offline", tokens: 1 }); // conflicts: A's memory was stale
    const gets = kv.ops.get;
    const updates = kv.ops.update;
    await a.record({ channel: "#c", provider: "offline", tokens: 1 });
    // The channel's key is read first (no wasted write); A's own shard still is not.
    expect(kv.ops.get - gets).toBe(1);
    expect(kv.ops.update - updates).toBe(2);
    expect(await a.get({ channel: "#c" })).toMatchObject({ requests_today: 4 });
  });

  it("forgets a key whose write failed and reads it again next time", async () => {
    const inner = new MemoryKv("USAGE");
    let fail = false;
    const kv = Object.assign(Object.create(inner) as MemoryKv, {
      update: (k: string, v: Uint8Array, r: number) => (fail ? Promise.reject(new Error("timeout")) : inner.update(k, v, r)),
    });
    const usage = createUsage({ kv, config: defaultConfig(), clock: clockAt("2024-05-01T12:00:00Z"), log: silentLogger, instance: "f" });
    await usage.record({ user: "x", provider: "offline", tokens: 1 });
    await usage.record({ user: "x", provider: "offline", tokens: 1 });
    fail = true;
    await expect(usage.record({ user: "x", provider: "offline", tokens: 1 })).rejects.toThrow("timeout");
    fail = false;
    const gets = inner.ops.get;
    await usage.record({ user: "x", provider: "offline", tokens: 1 });
    expect(inner.ops.get - gets).toBe(2);
    expect(await usage.get({ user: "x" })).toMatchObject({ requests_today: 3 });
  });
});

describe("usage on nats-server, three instances", () => {
  let srv: NatsServer;
  let dir: string;
  const conns: NatsConnection[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "rosey-usage-"));
    srv = await startNatsServer({ storeDir: dir });
    for (let i = 0; i < 3; i++) conns.push(await connect({ servers: srv.url }));
    await conns[0].jetstream().views.kv("ROSEY_LLM_USAGE", { history: 1 });
  });

  afterAll(async () => {
    await Promise.all(conns.map((c) => c.close()));
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("sums every instance's share exactly", async () => {
    const config = defaultConfig();
    const clock = { now: () => Date.now() };
    const usages = await Promise.all(
      conns.map(async (nc, i) =>
        createUsage({ kv: natsKv(await nc.jetstream().views.kv("ROSEY_LLM_USAGE"), "ROSEY_LLM_USAGE"), config, clock, log: silentLogger, instance: `inst-${i}` }),
      ),
    );
    await Promise.all(
      Array.from({ length: 150 }, (_, i) =>
        usages[i % 3].record({ user: i % 2 ? "odd" : "even", channel: "#shared", provider: i % 3 ? "offline" : "openai", tokens: 3 }),
      ),
    );
    const total = await usages[1].get({});
    expect(total).toEqual({
      requests_today: 150,
      tokens_today: 450,
      by_provider: { offline: { requests: 100, tokens: 300 }, openai: { requests: 50, tokens: 150 } },
    });
    expect(await usages[2].get({ user: "odd" })).toMatchObject({ requests_today: 75, tokens_today: 225 });
    expect(await usages[0].get({ channel: "#shared" })).toMatchObject({ requests_today: 150 });
  });
});

describe("rosey.llm.usage", () => {
  const build = (limits: Partial<ConfigInput["limits"]> = {}) => {
    const config = { limits: limits as ConfigInput["limits"] };
    const clock = clockAt("2024-05-01T12:00:00Z");
    const base = createTestContext({ config, clock });
    const limiter = createLimiter({ kv: new MemoryKv("LIMITS"), config: base.config, clock, events: base.events, log: silentLogger });
    const usage = createUsage({ kv: new MemoryKv("USAGE"), config: base.config, clock, log: silentLogger });
    return { ...base, limiter, usage };
  };

  it("reports a user's day and what is left of their limits", async () => {
    const ctx = build({ user_per_minute: 5 });
    for (let i = 0; i < 2; i++) {
      const t = await ctx.limiter.admit({ user: "ann", channel: "#a", tokens: 100 });
      if (!t.ok) throw new Error("refused");
      await ctx.limiter.settle(t, 40);
      await ctx.usage.record({ user: "ann", channel: "#a", provider: "offline", tokens: 40 });
    }
    const res = await handle({ user: "ann" }, ctx);
    expect(UsageResponse.parse(res)).toMatchObject({
      success: true,
      user: "ann",
      requests_today: 2,
      tokens_today: 80,
      rate_limits_remaining: { per_minute: 3, per_hour: 98, per_day: 498, tokens_today: 50_000 - 80 },
    });
  });

  it("reports the service's day by provider when neither user nor channel is given", async () => {
    const ctx = build();
    await ctx.usage.record({ user: "a", provider: "offline", tokens: 4 });
    await ctx.usage.record({ channel: "#c", provider: "ollama", tokens: 6 });
    const res = await handle({}, ctx);
    expect(res).toMatchObject({
      success: true,
      requests_today: 2,
      tokens_today: 10,
      by_provider: { offline: { requests: 1, tokens: 4 }, ollama: { requests: 1, tokens: 6 } },
      rate_limits_remaining: { per_minute: 10, per_hour: 100, per_day: 500, tokens_today: 50_000 },
    });
    expect(res.user).toBeUndefined();
  });

  it("reports a channel's day", async () => {
    const ctx = build();
    await ctx.usage.record({ user: "a", channel: "#c", provider: "offline", tokens: 4 });
    await ctx.usage.record({ user: "b", channel: "#d", provider: "offline", tokens: 4 });
    expect(await handle({ channel: "#c" }, ctx)).toMatchObject({ channel: "#c", requests_today: 1, tokens_today: 4 });
  });
});
