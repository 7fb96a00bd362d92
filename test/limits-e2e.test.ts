// Limits over NATS with three runtime instances sharing one server: exactly the limit is
// admitted, whatever instance serves each request; usage and status report the truth; the
// threshold event is stored once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { replayEvents } from "../runtime/replay";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

let srv: TestServer;
let instances: TestInstance[] = [];
let nc: NatsConnection;

beforeAll(async () => {
  srv = await startTestServer();
  const config = {
    limits: { user_per_minute: 7, user_per_hour: 8, channel_per_hour: 12 } as never,
  };
  // A frozen clock: the per-minute window must not roll over between the burst and the checks.
  const now = Date.now();
  const clock = { now: () => now };
  instances = await Promise.all([0, 1, 2].map(() => startInstance(srv.url, config, { clock })));
  nc = await client(srv.url);
});

afterAll(async () => {
  await nc?.close();
  await Promise.all(instances.map((i) => i.stop()));
  await srv?.cleanup();
});

const chat = (user: string, channel: string, n: number) =>
  request(nc, "rosey.llm.chat", { channel, user, message: `message ${n} from ${user}` });

describe("limits across three instances", () => {
  it("admits exactly 7 of 40 concurrent chats from one user, and another user is unaffected", async () => {
    const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => chat("hot-user", `#room-${i % 8}`, i)));
    const ok = replies.filter((r) => r.body.success);
    const refused = replies.filter((r) => !r.body.success);
    expect(ok).toHaveLength(7);
    expect(refused).toHaveLength(33);
    for (const r of refused) {
      expect(r.body.error_code).toBe("rate_limited");
      expect(r.code).toBe("429");
      expect(r.body.retry_after).toBeGreaterThanOrEqual(1);
      expect(r.body.retry_after).toBeLessThanOrEqual(60);
      expect(r.body.error).toMatch(/^Rate limit exceeded \(per-minute\)\. Retry after \d+ seconds\.$/);
    }
    // Every instance served some of them: the limit held across instances, not per instance.
    const served = instances.map((i) => i.stats.get("chat")!.num_requests);
    expect(served.filter((n) => n > 0).length).toBeGreaterThan(1);

    expect((await chat("calm-user", "#room-0", 0)).body.success).toBe(true);
  });

  it("reports the user's usage and remaining limits", async () => {
    const u = (await request(nc, "rosey.llm.usage", { user: "hot-user" })).body;
    expect(u.success).toBe(true);
    expect(u.provider).toBe("offline");
    expect(u.requests_today).toBe(7);
    expect(u.tokens_today).toBeGreaterThan(0);
    expect(u.rate_limits_remaining).toMatchObject({ per_minute: 0, per_hour: 1, per_day: 493 });
  });

  it("keeps a channel's hourly limit exact across different users", async () => {
    const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => chat(`user-${i}`, "#busy", i)));
    expect(replies.filter((r) => r.body.success)).toHaveLength(12);
    const refused = replies.find((r) => !r.body.success)!;
    expect(refused.body.error).toMatch(/channel/);
  });

  it("never lets names that look like subjects share counters", async () => {
    for (const name of [">", "*", "a.b", "a"]) {
      const replies = await Promise.all(Array.from({ length: 9 }, (_, i) => chat(name, `#own-${name}`, i)));
      expect(replies.filter((r) => r.body.success), name).toHaveLength(7);
    }
  });

  it("stores the hourly threshold event once although three instances raced to it", async () => {
    await Promise.all(instances.map((i) => i.ctx.events.flush()));
    const seen = [];
    for await (const e of replayEvents(nc.jetstream(), { prefix: "rosey", type: "usage.threshold" })) seen.push(e.event);
    const hot = seen.filter((e) => e.user === "hot-user" && e.threshold_type === "hourly");
    expect(hot).toHaveLength(1);
    expect(hot[0]).toMatchObject({ limit: 8, current: 7 });
  });

  it("status totals are the global counters", async () => {
    const s = (await request(nc, "rosey.llm.status", {})).body;
    // 7 + 1 + 12 + 4×7 admitted chats.
    expect(s.requests_today).toBe(48);
    expect(s.rate_limited).toBe(false);
  });
});
