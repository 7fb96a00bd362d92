// Usage as settled calls record it (in-memory bucket and a real nats-server), and the
// rosey.llm.usage handler.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultConfig, type ConfigInput } from "../lib/config";
import type { Clock, Limiter, Usage } from "../lib/context";
import { MemoryKv, type Kv } from "../lib/kv";
import { LIMITS_TTL_MS, createLimiter, type RuntimeLimiter } from "../lib/limiter";
import { silentLogger } from "../lib/log";
import { UsageResponse } from "../lib/schemas";
import { createUsage } from "../lib/usage";
import { handle } from "../handlers/usage";
import { natsKv } from "../runtime/kv";
import { startNatsServer, type NatsServer } from "../runtime/nats-server";
import { createTestContext } from "./helpers/context";

const clockAt = (iso: string) => ({ t: Date.parse(iso), now() { return this.t; } });
const events = { emit: () => "", async flush() {} };

/** A limiter and the usage read over the same bucket, as the runtime builds them. */
function accounting(kv: Kv, clock: Clock, over: Partial<ConfigInput> = {}, instance?: string) {
  const config = defaultConfig(over);
  const limiter = createLimiter({ kv, config, clock, events, log: silentLogger, instance });
  return { limiter, usage: createUsage({ kv, config, clock, log: silentLogger, pending: limiter.pendingUsage }) };
}

/** One call admitted and settled. */
async function call(limiter: Limiter, who: { user?: string; channel?: string }, provider: string, tokens: number) {
  const t = await limiter.admit({ ...who, tokens: 100 });
  if (!t.ok) throw new Error(t.message);
  await limiter.settle(t, { tokens, provider });
}

describe("usage recorded by settled calls", () => {
  it("counts requests and tokens per user, channel, provider and service", async () => {
    const { limiter, usage } = accounting(new MemoryKv("LIMITS"), clockAt("2024-05-01T12:00:00Z"));
    await call(limiter, { user: "ann", channel: "#a" }, "offline", 10);
    await call(limiter, { user: "ann", channel: "#b" }, "openai", 5);
    await call(limiter, { user: "ben", channel: "#a" }, "offline", 7);
    await call(limiter, {}, "offline", 1);
    expect(await usage.get({ user: "ann" })).toEqual({
      requests_today: 2,
      tokens_today: 15,
      by_provider: { offline: { requests: 1, tokens: 10 }, openai: { requests: 1, tokens: 5 } },
    });
    expect(await usage.get({ channel: "#a" })).toMatchObject({ requests_today: 2, tokens_today: 17 });
    expect(await usage.get({})).toMatchObject({ requests_today: 4, tokens_today: 23 });
  });

  it("keeps `a`, `a.b`, `>` and `*` apart", async () => {
    const { limiter, usage } = accounting(new MemoryKv("LIMITS"), clockAt("2024-05-01T12:00:00Z"));
    const names = ["a", "a.b", ">", "*"];
    for (const [i, n] of names.entries()) for (let j = 0; j <= i; j++) await call(limiter, { user: n, channel: n }, "offline", 1);
    for (const [i, n] of names.entries()) {
      expect((await usage.get({ user: n })).requests_today).toBe(i + 1);
      expect((await usage.get({ channel: n })).requests_today).toBe(i + 1);
    }
  });

  it("starts a new day at local midnight of the configured zone", async () => {
    const clock = clockAt("2024-05-01T18:29:00Z"); // 23:59 in Kolkata
    const { limiter, usage } = accounting(new MemoryKv("LIMITS"), clock, { timezone: "Asia/Kolkata" });
    await call(limiter, { user: "k", channel: "#k" }, "offline", 3);
    clock.t = Date.parse("2024-05-01T18:31:00Z");
    expect(await usage.get({ user: "k" })).toMatchObject({ requests_today: 0, tokens_today: 0 });
    expect(await usage.get({ channel: "#k" })).toMatchObject({ requests_today: 0 });
    expect(await usage.get({})).toMatchObject({ requests_today: 0 });
  });

  it("a channel's usage is written with its next admission, or on its own within 1.5 s", async () => {
    const kv = new MemoryKv("LIMITS");
    const clock = clockAt("2024-05-01T12:00:00Z");
    const { limiter } = accounting(kv, clock);
    const other = accounting(kv, clock).usage;
    await call(limiter, { user: "c", channel: "#lag" }, "offline", 9);
    // Another instance's read does not see what this one has not written yet...
    expect(await other.get({ channel: "#lag" })).toMatchObject({ requests_today: 0 });
    // ...until it is written: here with the channel's next admission.
    await call(limiter, { user: "d", channel: "#lag" }, "offline", 1);
    expect(await other.get({ channel: "#lag" })).toMatchObject({ requests_today: 1, tokens_today: 9 });
    for (let i = 0; i < 200 && (await other.get({ channel: "#lag" })).requests_today < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await other.get({ channel: "#lag" })).toMatchObject({ requests_today: 2, tokens_today: 10 });
  });
});

describe("a channel's usage across midnight", () => {
  it("usage of a day the channel's document has left does not replace the new day", async () => {
    const kv = new MemoryKv("LIMITS");
    const clock = clockAt("2024-05-01T23:59:59Z");
    const a = accounting(kv, clock, {}, "a");
    const b = accounting(kv, clock, {}, "b");
    // A's call waits to be written with the channel's next admission...
    await call(a.limiter, { user: "x", channel: "#mid" }, "offline", 4);
    // ...while B starts the channel's next day.
    clock.t = Date.parse("2024-05-02T00:00:01Z");
    await call(b.limiter, { user: "y", channel: "#mid" }, "offline", 6);
    await (b.limiter as RuntimeLimiter).close();
    await (a.limiter as RuntimeLimiter).close();
    expect(await b.usage.get({ channel: "#mid" })).toMatchObject({ requests_today: 1, tokens_today: 6 });
  });
});

describe("usage history", () => {
  it("keeps a user's and a channel's day in the usage bucket once their next day starts, and the instance's share from its first call", async () => {
    const clock = clockAt("2024-05-01T23:59:00Z");
    const history = new MemoryKv("USAGE");
    const config = defaultConfig({});
    const kv = new MemoryKv("LIMITS");
    const limiter = createLimiter({ kv, config, clock, events, log: silentLogger, instance: "hist", history });
    await call(limiter, { user: "hana", channel: "#h" }, "offline", 12);
    const read = async (k: string) => JSON.parse(new TextDecoder().decode((await history.get(k))!.value));
    const inst = "d.2024-05-01.i.aGlzdA";
    await new Promise((r) => setTimeout(r, 10));
    expect(await read(inst)).toEqual({ requests: 1, tokens: 12, by_provider: { offline: { requests: 1, tokens: 12 } } });
    // The user's and channel's day is still live; the next day's first call copies it.
    expect(await history.get("d.2024-05-01.u.aGFuYQ")).toBeNull();
    await (limiter as RuntimeLimiter).close();
    clock.t = Date.parse("2024-05-02T00:01:00Z");
    await call(limiter, { user: "hana", channel: "#h" }, "offline", 5);
    await (limiter as RuntimeLimiter).close();
    await new Promise((r) => setTimeout(r, 10));
    expect(await read("d.2024-05-01.u.aGFuYQ")).toEqual({ requests: 1, tokens: 12, by_provider: { offline: { requests: 1, tokens: 12 } } });
    expect(await read("d.2024-05-01.c.I2g")).toMatchObject({ requests: 1, tokens: 12 });
    expect(await read("d.2024-05-02.i.aGlzdA")).toMatchObject({ requests: 1, tokens: 5 });
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
    await conns[0].jetstream().views.kv("ROSEY_LLM_LIMITS", { history: 1, ttl: LIMITS_TTL_MS });
  });

  afterAll(async () => {
    await Promise.all(conns.map((c) => c.close()));
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("sums every instance's share exactly", async () => {
    const clock = { now: () => Date.now() };
    const parts = await Promise.all(
      conns.map(async (nc, i) => accounting(natsKv(await nc.jetstream().views.kv("ROSEY_LLM_LIMITS"), "ROSEY_LLM_LIMITS"), clock, { limits: { user_per_minute: 100 } as never }, `inst-${i}`)),
    );
    await Promise.all(
      Array.from({ length: 150 }, (_, i) =>
        call(parts[i % 3].limiter, { user: `u${i % 10}`, channel: "#shared" }, i % 3 ? "offline" : "openai", 3),
      ),
    );
    await Promise.all(parts.map((p) => (p.limiter as RuntimeLimiter).close()));
    const total = await parts[1].usage.get({});
    expect(total).toEqual({
      requests_today: 150,
      tokens_today: 450,
      by_provider: { offline: { requests: 100, tokens: 300 }, openai: { requests: 50, tokens: 150 } },
    });
    expect(await parts[2].usage.get({ user: "u3" })).toMatchObject({ requests_today: 15, tokens_today: 45 });
    expect(await parts[0].usage.get({ channel: "#shared" })).toMatchObject({ requests_today: 150 });
  });
});

describe("rosey.llm.usage", () => {
  const build = (limits: Partial<ConfigInput["limits"]> = {}) => {
    const config = { limits: limits as ConfigInput["limits"] };
    const clock = clockAt("2024-05-01T12:00:00Z");
    const base = createTestContext({
      config,
      clock,
      providers: { current: () => ({ name: "ollama", model: "llama3" }) } as never,
    });
    const parts: { limiter: Limiter; usage: Usage } = accounting(new MemoryKv("LIMITS"), clock, { limits: limits as ConfigInput["limits"] });
    return { ...base, ...parts };
  };

  it("reports a user's day, what is left of their limits and the active provider", async () => {
    const ctx = build({ user_per_minute: 5 });
    for (let i = 0; i < 2; i++) await call(ctx.limiter, { user: "ann", channel: "#a" }, "offline", 40);
    const res = await handle({ user: "ann" }, ctx);
    expect(UsageResponse.parse(res)).toMatchObject({
      success: true,
      user: "ann",
      provider: "ollama",
      requests_today: 2,
      tokens_today: 80,
      rate_limits_remaining: { per_minute: 3, per_hour: 98, per_day: 498, tokens_today: 50_000 - 80 },
    });
  });

  it("reports the service's day by provider when neither user nor channel is given", async () => {
    const ctx = build();
    await call(ctx.limiter, { user: "a" }, "offline", 4);
    await call(ctx.limiter, { channel: "#c" }, "ollama", 6);
    const res = await handle({}, ctx);
    expect(res).toMatchObject({
      success: true,
      provider: "ollama",
      requests_today: 2,
      tokens_today: 10,
      by_provider: { offline: { requests: 1, tokens: 4 }, ollama: { requests: 1, tokens: 6 } },
      rate_limits_remaining: { per_minute: 10, per_hour: 100, per_day: 500, tokens_today: 50_000 },
    });
    expect(res.user).toBeUndefined();
  });

  it("reports a channel's day", async () => {
    const ctx = build();
    await call(ctx.limiter, { user: "a", channel: "#c" }, "offline", 4);
    await call(ctx.limiter, { user: "b", channel: "#d" }, "offline", 4);
    expect(await handle({ channel: "#c" }, ctx)).toMatchObject({ channel: "#c", requests_today: 1, tokens_today: 4 });
  });
});
