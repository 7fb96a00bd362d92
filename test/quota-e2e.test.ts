// A user's daily token quota over NATS with two runtime instances, as a plugin sees it: 30
// concurrent `complete` calls against a 300-token quota. Every refusal says why and when to
// come back, and that is true; settled use passes the quota by at most one request; the
// token threshold event is stored exactly once, when settled use crosses it.
import type { NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { calendar } from "../lib/limiter";
import { reservation } from "../lib/llm";
import { replayEvents } from "../runtime/replay";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

const QUOTA = 300;
let srv: TestServer;
let instances: TestInstance[] = [];
let nc: NatsConnection;
// A frozen clock: the whole test happens at one instant of one day.
const now = Date.parse("2031-03-04T15:20:10Z");
const secondsToMidnight = Math.ceil((calendar("UTC").day(now).end - now) / 1000);

beforeAll(async () => {
  srv = await startTestServer();
  const config = { limits: { user_tokens_per_day: QUOTA, user_per_minute: 1_000, user_per_hour: 1_000, user_per_day: 1_000 } as never };
  instances = await Promise.all([0, 1].map(() => startInstance(srv.url, config, { clock: { now: () => now } })));
  nc = await client(srv.url);
});

afterAll(async () => {
  await nc?.close();
  await Promise.all(instances.map((i) => i.stop()));
  await srv?.cleanup();
});

const complete = (i: number) =>
  request(nc, "rosey.llm.complete", { user: "quota-user", messages: [{ role: "user", content: `question ${i} about cats` }], max_tokens: 20 });

type Reply = Awaited<ReturnType<typeof complete>>;
const held = (r: Reply) => /held by requests in flight/.test(r.body.error ?? "");

describe("a 300-token daily quota under 30 concurrent requests", () => {
  const replies: Reply[] = [];

  it("refuses honestly: in-flight reservations give a short wait, spent quota the end of the day", async () => {
    // The first wave, all at once; then every caller told "held by requests in flight"
    // comes back (the calls in flight have settled by then), as a client would.
    let wave = await Promise.all(Array.from({ length: 30 }, (_, i) => complete(i)));
    replies.push(...wave);
    for (let round = 0; round < 10 && wave.some(held); round++) {
      wave = await Promise.all(wave.filter(held).map((_, i) => complete(100 * (round + 1) + i)));
      replies.push(...wave);
    }
    const ok = replies.filter((r) => r.body.success);
    const refused = replies.filter((r) => !r.body.success);
    expect(ok.length).toBeGreaterThan(5);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) {
      expect(r.code).toBe("429");
      expect(r.body.error_code).toBe("quota_exceeded");
      if (held(r)) {
        // Reservations are settled, or taken back, within the request deadline (30 s) + 10 s.
        expect(r.body.retry_after).toBeGreaterThanOrEqual(1);
        expect(r.body.retry_after).toBeLessThanOrEqual(40);
      } else {
        expect(r.body).toMatchObject({ retry_after: secondsToMidnight, error: `Token quota exceeded (tokens-per-day). Retry after ${secondsToMidnight} seconds.` });
      }
    }
    // Everyone who was told to come back came back, and ended admitted or refused for spent quota.
    expect(wave.some(held)).toBe(false);
    expect(refused.some((r) => !held(r))).toBe(true);
  });

  it("settles to at most the quota plus one request, and usage says so", async () => {
    const used = replies.filter((r) => r.body.success).map((r) => r.body.tokens_used as number);
    const total = used.reduce((a, b) => a + b, 0);
    expect(total).toBeLessThanOrEqual(QUOTA + Math.max(...used));
    // A spent refusal is true: settled use (which only grew since) left no room for its reservation.
    const need = reservation([{ role: "user", content: "question 100 about cats" }], 20);
    expect(total + need).toBeGreaterThan(QUOTA);
    const u = (await request(nc, "rosey.llm.usage", { user: "quota-user" })).body;
    expect(u).toMatchObject({ success: true, requests_today: used.length, tokens_today: total, provider: "offline" });
    expect(u.rate_limits_remaining.tokens_today).toBe(Math.max(0, QUOTA - total));
  });

  it("stores the token threshold event exactly once, when settled use crossed 80 %", async () => {
    await Promise.all(instances.map((i) => i.ctx.events.flush()));
    const seen = [];
    for await (const e of replayEvents(nc.jetstream(), { prefix: "rosey", type: "usage.threshold" })) seen.push(e.event);
    const tokens = seen.filter((e) => e.user === "quota-user" && e.threshold_type === "tokens");
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatchObject({ scope: "user", limit: QUOTA });
    expect(tokens[0].current as number).toBeGreaterThanOrEqual(0.8 * QUOTA);
    // No other threshold of this user fired: its request limits were far away.
    expect(seen.filter((e) => e.user === "quota-user")).toHaveLength(1);
  });

  it("publishes every refusal as a quota error event naming the provider, and every answer with an integer latency", async () => {
    const errors = [];
    for await (const e of replayEvents(nc.jetstream(), { prefix: "rosey", type: "error" })) errors.push(e.event);
    const mine = errors.filter((e) => e.user === "quota-user");
    expect(mine).toHaveLength(replies.filter((r) => !r.body.success).length);
    for (const e of mine) expect(e).toMatchObject({ error_type: "quota", provider: "offline", endpoint: "complete" });
    const responses = [];
    for await (const e of replayEvents(nc.jetstream(), { prefix: "rosey", type: "response" })) responses.push(e.event);
    expect(responses).toHaveLength(replies.filter((r) => r.body.success).length);
    for (const e of responses) expect(Number.isInteger(e.latency_ms)).toBe(true);
  });
});
