// Writes cost what chats cost: memory adds and forgets, context resets and persona changes
// count against per-user and per-channel limits per (sliding) minute, refused as
// rate_limited with retry_after and without the write being made; exact across instances.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { defaultConfig } from "../lib/config";
import { isRoseyError } from "../lib/errors";
import { MemoryKv } from "../lib/kv";
import { createWriteLimiter, secondsUntilRoom } from "../lib/limiter";
import { endpointSubject, type EndpointName } from "../lib/subjects";
import { rejectionOf } from "./helpers/assert";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

const T0 = Date.parse("2026-01-01T00:00:00Z");

function limiter(limits: Record<string, unknown>, at: { now: number }) {
  const config = defaultConfig({ limits: limits as never }).limits;
  return createWriteLimiter({ kv: new MemoryKv("LIMITS", { now: () => at.now }), config, clock: { now: () => at.now } });
}

/** The rate_limited refusal of a write (fails the test when it is admitted). */
const refusal = (p: Promise<void>) => rejectionOf(p, isRoseyError);

describe("the write limiter", () => {
  it("refuses the user's write over the limit with retry_after, and frees room as the minute slides", async () => {
    const at = { now: T0 + 30_000 };
    const w = limiter({ user_writes_per_minute: 3, channel_writes_per_minute: 0 }, at);
    for (let i = 0; i < 3; i++) await w.admit({ user: "mallory", channel: "#a", admin: false });
    const r = await refusal(w.admit({ user: "mallory", channel: "#b", admin: false }));
    expect(r).toMatchObject({ code: "rate_limited" });
    expect(r.retry_after).toBeGreaterThan(0);
    // Another user is not affected.
    await w.admit({ user: "alice", channel: "#a", admin: false });
    // When retry_after has passed, there is room again.
    at.now += r.retry_after! * 1000;
    await w.admit({ user: "mallory", channel: "#a", admin: false });
    // Two minutes on, the whole budget is back.
    at.now += 120_000;
    for (let i = 0; i < 3; i++) await w.admit({ user: "mallory", admin: false });
  });

  it("limits a channel over all its users, and gives the user back what a refused write counted", async () => {
    const at = { now: T0 };
    const w = limiter({ user_writes_per_minute: 2, channel_writes_per_minute: 3 }, at);
    await w.admit({ user: "a", channel: "#c", admin: false });
    await w.admit({ user: "b", channel: "#c", admin: false });
    await w.admit({ user: "c", channel: "#c", admin: false });
    expect(await refusal(w.admit({ user: "d", channel: "#c", admin: false }))).toMatchObject({ code: "rate_limited" });
    // d's refused write in #c did not use d's own budget: two writes elsewhere still fit.
    await w.admit({ user: "d", channel: "#e", admin: false });
    await w.admit({ user: "d", channel: "#f", admin: false });
    expect(await refusal(w.admit({ user: "d", channel: "#g", admin: false }))).toMatchObject({ code: "rate_limited" });
  });

  it("0 turns a limit off", async () => {
    const w = limiter({ user_writes_per_minute: 0, channel_writes_per_minute: 0 }, { now: T0 });
    for (let i = 0; i < 50; i++) await w.admit({ user: "u", channel: "#c", admin: false });
  });

  it("exempts a claimed name everywhere by default, on admin subjects only with exempt_admin_only", async () => {
    const open = limiter({ user_writes_per_minute: 1, exempt_users: ["bot"] }, { now: T0 });
    for (let i = 0; i < 3; i++) await open.admit({ user: "bot", channel: "#c", admin: false });
    const strict = limiter({ user_writes_per_minute: 1, exempt_users: ["bot"], exempt_admin_only: true }, { now: T0 });
    for (let i = 0; i < 3; i++) await strict.admit({ user: "bot", channel: "#c", admin: true });
    await strict.admit({ user: "bot", channel: "#d", admin: false });
    expect(await refusal(strict.admit({ user: "bot", channel: "#d", admin: false }))).toMatchObject({ code: "rate_limited" });
  });

  it("says when there is room: once this minute's count, as the previous one, weighs little enough", () => {
    expect(secondsUntilRoom(0, 3, 3, 0)).toBe(80); // next minute: 3 × (1 − t/60) + 1 ≤ 3 from t = 20 s into it
    expect(secondsUntilRoom(3, 0, 3, 0)).toBe(20);
    expect(secondsUntilRoom(0, 1, 1, 59_000)).toBe(61);
  });
});

describe("over NATS, through two instances", () => {
  let srv: TestServer;
  let a: TestInstance;
  let b: TestInstance;
  let nc: NatsConnection;
  const config = { limits: { user_writes_per_minute: 3, channel_writes_per_minute: 5 } as never };
  const call = (name: EndpointName, body: unknown) => request(nc, endpointSubject("rosey", name), body).then((r) => r.body);

  beforeAll(async () => {
    srv = await startTestServer();
    [a, b] = await Promise.all([startInstance(srv.url, config), startInstance(srv.url, config)]);
    nc = await client(srv.url);
  });
  afterAll(async () => {
    await nc?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await srv?.cleanup();
  });

  it("a user's fourth memory write in a minute is refused, whichever instance answers, and not stored", async () => {
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push(await call("memory_add", { channel: `#w${i}`, user_id: "mallory", content: `note ${i} about kites` }));
    expect(replies.slice(0, 3).every((r) => r.success)).toBe(true);
    expect(replies[3]).toMatchObject({ success: false, error_code: "rate_limited" });
    expect(replies[3].retry_after).toBeGreaterThan(0);
    expect(await call("memory_recall", { channel: "#w3", query: "kites", user_id: "mallory" })).toMatchObject({ count: 0 });
  });

  it("counts exactly across instances: writes alternating between them share one budget", async () => {
    const admit = (i: number) => [a, b][i % 2].ctx.writes.admit({ user: "eve", channel: `#x${i}`, admin: false });
    for (let i = 0; i < 3; i++) await admit(i);
    expect(await refusal(admit(3))).toMatchObject({ code: "rate_limited" });
    expect(await refusal(admit(4))).toMatchObject({ code: "rate_limited" });
    // Concurrent writes on both instances: never more admitted than the limit.
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => [a, b][i % 2].ctx.writes.admit({ user: "zed", admin: false })));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(3);
  });

  it("a channel's resets, persona selections and adds share its limit", async () => {
    const replies = [
      await call("persona_set", { channel: "#busy", persona: "concise" }),
      await call("context_reset", { channel: "#busy" }),
      await call("memory_add", { channel: "#busy", content: "boats float" }),
      await call("memory_add", { channel: "#busy", content: "sails catch wind" }),
      await call("persona_set", { channel: "#busy", persona: "technical" }),
      await call("persona_set", { channel: "#busy", persona: "creative" }),
    ];
    expect(replies.slice(0, 5).map((r) => r.success)).toEqual([true, true, true, true, true]);
    expect(replies[5]).toMatchObject({ success: false, error_code: "rate_limited" });
    // The refused selection was not made.
    expect(await call("persona_get", { channel: "#busy" })).toMatchObject({ persona: { name: "technical" } });
  });
});
