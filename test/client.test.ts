// The typed client against a real nats-server and a runtime instance: every method, local
// validation, service errors as typed values, and transport failures when nobody answers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { createClient, isTransportFailure, type RoseyLlmClient } from "../lib/client";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, startInstance, type TestInstance } from "./helpers/service";

let srv: TestServer;
let inst: TestInstance;
let nc: NatsConnection;
let llm: RoseyLlmClient;

beforeAll(async () => {
  srv = await startTestServer();
  // Frozen clock: a minute boundary must not reset the per-minute window mid-test.
  const now = Date.now();
  inst = await startInstance(srv.url, { limits: { user_per_minute: 3 } as never }, { clock: { now: () => now } });
  nc = await client(srv.url);
  llm = createClient(nc, { timeoutMs: 10_000 });
});

afterAll(async () => {
  await nc?.close();
  await inst?.stop();
  await srv?.cleanup();
});

describe("createClient", () => {
  it("chat answers with content, tokens and provider", async () => {
    const r = await llm.chat({ channel: "#client", user: "alice", message: "what is a cat" });
    if (!r.success) throw new Error(r.error);
    expect(r.content).toContain("[offline]");
    expect(r.provider).toBe("offline");
    expect(r.tokens_used).toBeGreaterThan(0);
  });

  it("complete and summarize answer", async () => {
    const c = await llm.complete({ messages: [{ role: "user", content: "Say hi" }], user: "carol" });
    expect(c).toMatchObject({ success: true, provider: "offline" });
    const s = await llm.summarize({ text: "The quick brown fox jumps over the lazy dog. ".repeat(20), max_length: 10, user: "carol" });
    if (!s.success) throw new Error(s.error);
    expect(s.summary!.split(/\s+/).filter(Boolean).length).toBeLessThanOrEqual(10);
  });

  it("adds, recalls and forgets memories", async () => {
    const add = await llm.memoryAdd({ channel: "#mem", content: "Alice likes green tea", user_id: "alice", importance: 4 });
    expect(add.success).toBe(true);
    // A user's memories are recalled in that user's scope.
    const recall = await llm.memoryRecall({ channel: "#mem", query: "tea", user_id: "alice" });
    if (!recall.success) throw new Error(recall.error);
    expect(recall.memories).toContain("Alice likes green tea");
    expect(recall.count).toBe(recall.memories.length);
    const id = recall.items?.[0]?.id;
    expect(id).toBeTruthy();
    const forget = await llm.memoryForget({ channel: "#mem", id: id! });
    expect(forget.success).toBe(true);
    const again = await llm.memoryRecall({ channel: "#mem", query: "tea", user_id: "alice" });
    expect(again.success && again.memories).toEqual([]);
  });

  it("resets context", async () => {
    expect(await llm.contextReset({ channel: "#client" })).toMatchObject({ success: true });
  });

  it("gets, sets and lists personas", async () => {
    const defined = await llm.personaDefine({ name: "pirate", system_prompt: "Talk like a pirate.", temperature: 1.1, owner: "ops" });
    expect(defined).toMatchObject({ success: true, persona: { name: "pirate" } });
    const selected = await llm.personaSet({ channel: "#ship", persona: "pirate" });
    expect(selected).toMatchObject({ success: true, persona: { name: "pirate" } });
    const got = await llm.personaGet({ channel: "#ship" });
    if (!got.success) throw new Error(got.error);
    expect(got.persona).toMatchObject({ name: "pirate", system_prompt: "Talk like a pirate.", temperature: 1.1 });
    const list = await llm.personaList();
    if (!list.success) throw new Error(list.error);
    expect(list.personas.map((p) => p.name)).toEqual(expect.arrayContaining(["default", "concise", "technical", "creative", "pirate"]));
    expect(list.personas.find((p) => p.name === "pirate")?.owner).toBe("ops");
    expect(list.next_cursor).toBeUndefined();
  });

  it("deletes a defined persona: channels that selected it fall back to default; fixed ones stay", async () => {
    await llm.personaDefine({ name: "parrot", system_prompt: "Repeat everything." });
    await llm.personaSet({ channel: "#perch", persona: "parrot" });
    expect(await llm.personaDelete({ name: "parrot" })).toMatchObject({ success: true, persona: { name: "parrot" } });
    expect(await llm.personaGet({ channel: "#perch" })).toMatchObject({ success: true, persona: { name: "default" } });
    expect(await llm.personaSet({ channel: "#perch", persona: "parrot" })).toMatchObject({ error_code: "not_found" });
    expect(await llm.personaDelete({ name: "parrot" })).toMatchObject({ error_code: "not_found" });
    expect(await llm.personaDelete({ name: "default" })).toMatchObject({ error_code: "validation" });
    expect(await llm.personaGet({ channel: "#nobody" })).toMatchObject({ persona: { name: "default", builtin: true } });
  });

  it("plugins can no longer define personas through persona_set", async () => {
    const r = await llm.call("persona_set", { name: "sneaky", system_prompt: "Obey me." } as never, { validate: false });
    expect(r).toMatchObject({ success: false, error_code: "validation" });
    expect(await llm.personaGet({ channel: "#nobody" })).toMatchObject({ persona: { name: "default" } });
    const list = await llm.personaList();
    expect(list.success && list.personas.some((p) => p.name === "sneaky")).toBe(false);
  });

  it("reports status and usage", async () => {
    const s = await llm.status();
    if (!s.success) throw new Error(s.error);
    expect(s.healthy).toBe(true);
    expect(s.instance).toBe(inst.id);
    expect(s.providers.map((p) => p.name)).toEqual(["offline"]);
    const u = await llm.usage({ user: "alice" });
    if (!u.success) throw new Error(u.error);
    expect(u.requests_today).toBeGreaterThanOrEqual(1);
    expect(u.rate_limits_remaining?.per_minute).toBeLessThan(3);
  });

  it("call() reaches any endpoint by name", async () => {
    const r = await llm.call("persona_get", { channel: "#nobody" });
    expect(r).toMatchObject({ success: true, persona: { name: "default" } });
  });
});

describe("errors as values", () => {
  it("refuses an invalid request locally, naming the field, without sending it", async () => {
    const before = inst.stats.get("chat")!.num_requests;
    // @ts-expect-error: a number is not a user name; the type checker catches it too.
    const r = await llm.chat({ channel: "#c", user: 5, message: "hi" });
    expect(r).toMatchObject({ success: false, error_code: "validation", local: true, tokens_used: 0 });
    expect(r.error).toMatch(/user/);
    const bad = await llm.complete({ messages: [{ role: "user", content: "x" }], temperature: 3 });
    expect(bad).toMatchObject({ success: false, error_code: "validation", local: true });
    expect(bad.error).toMatch(/temperature/);
    expect(inst.stats.get("chat")!.num_requests).toBe(before);
  });

  it("with validation off the service refuses the same request with the same code", async () => {
    const r = await llm.complete({ messages: [{ role: "user", content: "x" }], temperature: 3 }, { validate: false });
    expect(r).toMatchObject({ success: false, error_code: "validation" });
    expect(r).not.toHaveProperty("local");
    expect(r.error).toMatch(/temperature/);
  });

  it("surfaces not_found from the service as a value", async () => {
    const r = await llm.personaSet({ channel: "#x", persona: "no-such-persona" });
    expect(r).toMatchObject({ success: false, error_code: "not_found" });
    expect(isTransportFailure(r)).toBe(false);
  });

  it("surfaces rate_limited with retry_after once a user's minute is spent", async () => {
    let limited;
    for (let i = 0; i < 5 && !limited; i++) {
      const r = await llm.chat({ channel: "#busy", user: "speedy", message: `hello ${i}` });
      if (!r.success) limited = r;
    }
    expect(limited).toBeDefined();
    expect(limited!.error_code).toBe("rate_limited");
    expect(limited!.retry_after).toBeGreaterThan(0);
    expect(limited!.retry_after).toBeLessThanOrEqual(60);
    if (limited!.error_code === "rate_limited") expect(limited!.tokens_used).toBe(0);
  });
});

describe("transport failures", () => {
  it("no_responders when no instance serves the prefix", async () => {
    const other = createClient(nc, { prefix: "nobody-here", timeoutMs: 2_000 });
    const r = await other.status();
    expect(r).toMatchObject({ success: false, transport: true, error_code: "no_responders" });
    expect(isTransportFailure(r)).toBe(true);
  });

  it("timeout when the responder never answers, before the caller's own deadline", async () => {
    // A subscriber that swallows requests: present (so not no_responders) but silent.
    const sub = nc.subscribe("silent.llm.status");
    try {
      const silent = createClient(nc, { prefix: "silent", timeoutMs: 300 });
      const started = Date.now();
      const r = await silent.status();
      expect(r).toMatchObject({ success: false, transport: true, error_code: "timeout" });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      sub.unsubscribe();
    }
  });

  it("bad_reply when something else answers with a non-conforming body", async () => {
    const sub = nc.subscribe("imposter.llm.status", { callback: (_e, m) => m.respond(new TextEncoder().encode('{"healthy":"very"}')) });
    try {
      const r = await createClient(nc, { prefix: "imposter", timeoutMs: 2_000 }).status();
      expect(r).toMatchObject({ success: false, transport: true, error_code: "bad_reply" });
    } finally {
      sub.unsubscribe();
    }
  });

  it("disconnected on a closed connection", async () => {
    const closed = await client(srv.url);
    await closed.close();
    const r = await createClient(closed).status();
    expect(r).toMatchObject({ success: false, transport: true, error_code: "disconnected" });
  });
});

describe("events", () => {
  it("replays stored events by type", async () => {
    await inst.ctx.events.flush();
    const seen = [];
    for await (const e of llm.events(nc.jetstream(), { type: "response" })) seen.push(e);
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(seen.every((e) => e.event.event === "response")).toBe(true);
    expect(seen.some((e) => e.event.user === "alice" && e.event.channel === "#client")).toBe(true);
  });
});
