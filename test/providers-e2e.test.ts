// Providers end to end over NATS: two runtime instances with the chain openai → offline,
// the openai provider pointing at a real local OpenAI-compatible HTTP server. Everything
// goes through NATS requests, as another plugin would send them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { createClient, type RoseyLlmClient } from "../lib/client";
import { endpointSubject } from "../lib/subjects";
import type { ProviderStatus } from "../lib/schemas";
import { replayEvents } from "../runtime/replay";
import { startTestServer, type TestServer } from "./helpers/nats";
import { fakeProviders, startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

// Not key-shaped on purpose: it must be kept out of replies and events because it is the
// configured key, not because it happens to look like one.
const KEY = "e2e-secret-7f3a9c1d5b";
// Long enough that both breakers are still open while the outage tests run on a slow machine.
const COOLDOWN_MS = 5_000;

let srv: TestServer;
let fake: FakeOpenAI;
let a: TestInstance;
let b: TestInstance;
let nc: NatsConnection;
let llm: RoseyLlmClient;
/** Every reply body any test received, for the key check at the end. */
const replies: unknown[] = [];

beforeAll(async () => {
  [srv, fake] = await Promise.all([startTestServer(), startOpenAIServer()]);
  const config = {
    providers: fakeProviders(fake.url, { api_key: KEY, timeout_ms: 1_000, max_retries: 1 }, { failure_threshold: 2, cooldown_ms: COOLDOWN_MS, deadline_ms: 5_000 }),
    limits: { user_per_minute: 1_000, user_per_hour: 10_000, user_per_day: 10_000 },
  };
  [a, b] = await Promise.all([startInstance(srv.url, config), startInstance(srv.url, config)]);
  nc = await client(srv.url);
  const raw = createClient(nc, { timeoutMs: 10_000 });
  // Same client, every reply kept for the key check.
  llm = new Proxy(raw, {
    get: (target, prop) => {
      const v = Reflect.get(target, prop);
      if (typeof v !== "function" || prop === "events") return v;
      return async (...args: unknown[]) => {
        const r = await (v as (...x: unknown[]) => Promise<unknown>)(...args);
        replies.push(r);
        return r;
      };
    },
  });
});

afterAll(async () => {
  await nc?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  await Promise.all([srv?.cleanup(), fake?.close()]);
});

const lastChat = () => fake.chats()[fake.chats().length - 1];
const chatCount = (i: TestInstance) => i.stats.get("chat")!.num_requests;
const openai = (s: { providers: ProviderStatus[] }) => s.providers.find((p) => p.name === "openai")!;

/** The latest status of each instance, asking until both have answered (queue group picks one per request). */
async function statusOfBoth() {
  const seen = new Map<string, Awaited<ReturnType<RoseyLlmClient["status"]>> & { success: true }>();
  for (let i = 0; i < 40 && seen.size < 2; i++) {
    const s = await llm.status();
    if (!s.success) throw new Error(s.error);
    seen.set(s.instance!, s as never);
  }
  expect([...seen.keys()].sort()).toEqual([a.id, b.id].sort());
  return [...seen.values()];
}

/** Events of one type currently in the stream. */
async function storedEvents(type?: string) {
  await Promise.all([a.ctx.events.flush(), b.ctx.events.flush()]);
  const out: Array<Record<string, unknown>> = [];
  for await (const e of replayEvents(nc.jetstream(), { prefix: "rosey", type })) out.push(e.event);
  return out;
}

describe("a healthy model", () => {
  it("chat answers with the model's content, provider openai and its usage total", async () => {
    fake.script({ kind: "reply", content: "Hello from the real model", usage: { prompt_tokens: 21, completion_tokens: 7, total_tokens: 28 } });
    const r = await llm.chat({ channel: "#e2e", user: "alice", message: "hi model" });
    expect(r).toMatchObject({ success: true, content: "Hello from the real model", provider: "openai", model: "test-model", tokens_used: 28 });
    const req = lastChat();
    expect(req.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(req.body.model).toBe("test-model");
    expect(req.body.messages.at(-1)).toMatchObject({ role: "user", content: expect.stringContaining("hi model") });

    const ev = (await storedEvents("response")).filter((e) => e.channel === "#e2e");
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ provider: "openai", model: "test-model", tokens_used: 28, endpoint: "chat" });
  });

  it("a persona defined and selected through one instance reaches the model from the other: prompt and temperature", async () => {
    const defined = await llm.personaDefine({ name: "e2e-pirate", system_prompt: "You are a pirate. End every answer with arr.", temperature: 1.3 });
    expect(defined.success).toBe(true);
    const beforeSelect = [a, b].map((i) => i.stats.get("persona_set")!.num_requests);
    const selected = await llm.personaSet({ channel: "#ship", persona: "e2e-pirate" });
    expect(selected.success).toBe(true);
    const selector = a.stats.get("persona_set")!.num_requests > beforeSelect[0] ? a : b;
    const other = selector === a ? b : a;

    const otherBefore = chatCount(other);
    const firstChat = fake.chats().length;
    for (let i = 0; i < 30 && chatCount(other) === otherBefore; i++) {
      const r = await llm.chat({ channel: "#ship", user: "bob", message: `ahoy ${i}` });
      expect(r).toMatchObject({ success: true, provider: "openai", persona: "e2e-pirate" });
    }
    expect(chatCount(other)).toBeGreaterThan(otherBefore);
    const sent = fake.chats().slice(firstChat);
    expect(sent.length).toBeGreaterThan(0);
    for (const req of sent) {
      expect(req.body.messages[0].role).toBe("system");
      expect(req.body.messages[0].content).toContain("You are a pirate. End every answer with arr.");
      expect(req.body.temperature).toBe(1.3);
    }
  });

  it("summarize sends the seed prompt at temperature 0.3 and bounds the answer to max_length words", async () => {
    const long = Array.from({ length: 40 }, (_, i) => `word${i}`).join(" ");
    fake.script({ kind: "reply", content: long, usage: { prompt_tokens: 50, completion_tokens: 40, total_tokens: 90 } });
    const text = "Rosey is a chat bot. It answers questions in channels and remembers facts. ".repeat(5);
    const r = await llm.summarize({ text, max_length: 10, user: "carol" });
    if (!r.success) throw new Error(r.error);
    expect(r.summary).toBe(long.split(" ").slice(0, 10).join(" "));
    expect(r).toMatchObject({ provider: "openai", tokens_used: 90 });
    const req = lastChat();
    expect(req.body.temperature).toBe(0.3);
    const prompt = req.body.messages.find((m: { role: string }) => m.role === "user").content as string;
    expect(prompt.startsWith("Summarize in 10 words or less:")).toBe(true);
    expect(prompt).toContain(text.trim());
  });
});

describe("an outage", () => {
  it("chat still answers quickly from the offline fallback, with no error event", async () => {
    // The error body echoes the key, as some real servers do; it must still never leak.
    fake.setDefault({ kind: "error", status: 500, message: `upstream exploded while using key ${KEY}` });
    const before = fake.chats().length;
    const started = Date.now();
    const r = await llm.chat({ channel: "#outage", user: "dave", message: "are you there" });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(r).toMatchObject({ success: true, provider: "offline" });
    expect(r.success && r.content).toContain("[offline]");
    // One attempt and max_retries = 1 retry, then the fallback.
    expect(fake.chats().length - before).toBe(2);
    // A fallback that answered is not a failure of the call: only a failed chain is an error event.
    const errors = (await storedEvents("error")).filter((e) => e.channel === "#outage");
    expect(errors).toEqual([]);
  });

  it("status on both instances reports openai unhealthy with last_error and cooldown_until", async () => {
    let statuses = await statusOfBoth();
    for (let i = 0; i < 20 && statuses.some((s) => openai(s).healthy); i++) {
      const r = await llm.chat({ channel: "#outage", user: "dave", message: `still there ${i}` });
      expect(r).toMatchObject({ success: true, provider: "offline" });
      statuses = await statusOfBoth();
    }
    for (const s of statuses) {
      const p = openai(s);
      expect(p.healthy).toBe(false);
      expect(p.last_error).toMatch(/500/);
      expect(p.last_error).not.toContain(KEY);
      expect(Date.parse(p.cooldown_until!)).toBeGreaterThan(Date.now());
      expect(s.healthy).toBe(true); // offline still answers
      expect(s.provider).toBe("offline");
      expect(s.providers.find((x) => x.name === "offline")!.healthy).toBe(true);
    }
  });

  it("complete forced to openai fails with provider_unavailable, the 503 header and retry_after, without calling it", async () => {
    const before = fake.chats().length;
    const r = await request(nc, endpointSubject("rosey", "complete"), {
      messages: [{ role: "user", content: "only openai will do" }],
      provider: "openai",
      user: "erin",
    });
    replies.push(r.body);
    expect(r.body).toMatchObject({ success: false, error_code: "provider_unavailable", tokens_used: 0 });
    expect(r.code).toBe("503");
    expect(r.body.retry_after).toBeGreaterThanOrEqual(1);
    expect(r.body.retry_after).toBeLessThanOrEqual(Math.ceil(COOLDOWN_MS / 1000));
    expect(r.body.error).not.toContain(KEY);
    expect(fake.chats().length).toBe(before); // the open breaker refused it
    const errors = (await storedEvents("error")).filter((e) => e.user === "erin");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ error_type: "provider_error", provider: "openai", endpoint: "complete" });
  });

  it("both instances heal after the cooldown once the server recovers", async () => {
    fake.setDefault({ kind: "reply" });
    const until = Math.max(...(await statusOfBoth()).map((s) => Date.parse(openai(s).cooldown_until!)));
    await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now()) + 100));

    let statuses = await statusOfBoth();
    const providers = new Set<string>();
    for (let i = 0; i < 20 && statuses.some((s) => !openai(s).healthy); i++) {
      const r = await llm.chat({ channel: "#healed", user: "frank", message: `back? ${i}` });
      expect(r.success).toBe(true);
      if (r.success) providers.add(r.provider!);
      statuses = await statusOfBoth();
    }
    expect(providers).toEqual(new Set(["openai"])); // the half-open probe itself answers
    for (const s of statuses) {
      expect(openai(s)).toMatchObject({ healthy: true, consecutive_failures: 0 });
      expect(openai(s).cooldown_until).toBeUndefined();
      expect(s.provider).toBe("openai");
    }
  });
});

describe("secrets", () => {
  it("the API key was sent to the model but appears in no reply and no event", async () => {
    expect(fake.chats().every((r) => r.headers.authorization === `Bearer ${KEY}`)).toBe(true);
    expect(replies.length).toBeGreaterThan(10);
    for (const r of replies) expect(JSON.stringify(r)).not.toContain(KEY);
    const events = await storedEvents();
    expect(events.length).toBeGreaterThan(5);
    for (const e of events) expect(JSON.stringify(e)).not.toContain(KEY);
  });
});
