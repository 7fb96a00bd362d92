// chat, complete, summarize and status as functions over an in-memory context with the
// real limiter, usage, memory and personas.
import { afterEach, describe, expect, it } from "vitest";
import * as chat from "../handlers/chat";
import * as complete from "../handlers/complete";
import * as status from "../handlers/status";
import * as summarize from "../handlers/summarize";
import { RoseyError } from "../lib/errors";
import { SYSTEM_USER, summarizeHistory } from "../lib/llm";
import type { ChatRequest } from "../lib/schemas";
import { createMemoryContext, recordingProviders, type MemoryCtx } from "./helpers/memory-context";

let ctx: MemoryCtx | undefined;
/** A clock stopped now, so a minute boundary cannot reset a window in the middle of a test. */
const frozen = () => {
  const t = Date.now();
  return { now: () => t };
};
afterEach(async () => {
  await ctx?.close();
  ctx = undefined;
});

const chatReq = (message: string, extra: Partial<ChatRequest> = {}) =>
  chat.request.parse({ channel: "#general", user: "alice", message, ...extra });

describe("rosey.llm.chat", () => {
  it("answers with the channel persona's prompt and temperature reaching the provider", async () => {
    const providers = recordingProviders();
    ctx = await createMemoryContext({ providers });
    await ctx.personas.select("#general", "technical");
    const r = await chat.handle(chatReq("how do I sort a list?"), ctx);
    expect(r).toMatchObject({ success: true, content: "echo: alice: how do I sort a list?", persona: "technical", provider: "recorder" });
    const call = providers.calls[0];
    expect(call.messages[0].role).toBe("system");
    expect(call.messages[0].content).toMatch(/precise technical assistant/);
    expect(call.options.temperature).toBe(0.2);
    expect(call.options.max_tokens).toBeGreaterThan(0);
  });

  it("uses chat.persona for one request only", async () => {
    const providers = recordingProviders();
    ctx = await createMemoryContext({ providers });
    await chat.handle(chatReq("tell me a story", { persona: "creative" }), ctx);
    await chat.handle(chatReq("and now?"), ctx);
    expect(providers.calls[0].messages[0].content).toMatch(/playful/);
    expect(providers.calls[0].options.temperature).toBe(1.0);
    expect(providers.calls[1].messages[0].content).toMatch(/friendly and helpful/);
  });

  it("carries the conversation: the second turn sees the first", async () => {
    const providers = recordingProviders();
    ctx = await createMemoryContext({ providers });
    await chat.handle(chatReq("my cat is called Miso"), ctx);
    await chat.handle(chatReq("what is my cat called?", { user: "bob" }), ctx);
    const texts = providers.calls[1].messages.map((m) => m.content).join("\n");
    expect(texts).toContain("my cat is called Miso");
    expect(texts).toContain("echo: alice: my cat is called Miso");
  });

  it("refuses the eighth request in a minute without calling the provider", async () => {
    const providers = recordingProviders();
    ctx = await createMemoryContext({ providers, clock: frozen(), config: { limits: { user_per_minute: 7 } as never } });
    for (let i = 0; i < 7; i++) expect((await chat.handle(chatReq(`msg ${i}`), ctx)).success).toBe(true);
    await expect(chat.handle(chatReq("one too many"), ctx)).rejects.toMatchObject({
      code: "rate_limited",
      retry_after: 60,
      message: "Rate limit exceeded (per-minute). Retry after 60 seconds.",
    });
    expect(providers.calls).toHaveLength(7);
    const err = ctx.recorded.find((e) => e.name === "error");
    // The provider the request would have reached is named.
    expect(err?.payload).toMatchObject({ error_type: "rate_limit", user: "alice", channel: "#general", provider: "recorder" });
  });

  it("chats with a quota smaller than the context budget: it reserves what is left, then the real prompt", async () => {
    const providers = recordingProviders();
    ctx = await createMemoryContext({ providers, clock: frozen(), config: { limits: { user_tokens_per_day: 1_000 } as never } });
    const r = await chat.handle(chatReq("short question"), ctx);
    expect(r.success).toBe(true);
    expect((await ctx.limiter.remaining("alice")).tokens_today).toBe(1_000 - r.tokens_used!);
  });

  it("refuses an unknown persona with not_found and consumes no limit", async () => {
    ctx = await createMemoryContext({ providers: recordingProviders(), config: { limits: { user_per_minute: 1 } as never } });
    await expect(chat.handle(chatReq("hi", { persona: "pirate" }), ctx)).rejects.toMatchObject({ code: "not_found" });
    expect((await chat.handle(chatReq("hi"), ctx)).success).toBe(true);
  });

  it("returns the token reservation when the provider fails, and publishes a provider_error event", async () => {
    const providers = recordingProviders();
    ctx = await createMemoryContext({ providers, config: { limits: { user_tokens_per_day: 20_000 } as never } });
    providers.fail = () => new RoseyError("provider_unavailable", "every provider is down", { provider: "openai" });
    const before = await ctx.limiter.remaining("alice");
    await expect(chat.handle(chatReq("hello?"), ctx)).rejects.toMatchObject({ code: "provider_unavailable" });
    expect((await ctx.limiter.remaining("alice")).tokens_today).toBe(before.tokens_today);
    const err = ctx.recorded.find((e) => e.name === "error");
    expect(err?.payload).toMatchObject({ error_type: "provider_error", provider: "openai" });
    expect(ctx.recorded.some((e) => e.name === "response")).toBe(false);
  });

  it("publishes a response event and counts usage with the real token total", async () => {
    ctx = await createMemoryContext({ providers: recordingProviders() });
    const r = await chat.handle(chatReq("count me"), ctx);
    const ev = ctx.recorded.find((e) => e.name === "response")!;
    expect(ev.payload).toMatchObject({
      channel: "#general",
      user: "alice",
      prompt_length: "count me".length,
      response_length: r.content!.length,
      tokens_used: r.tokens_used,
      provider: "recorder",
      model: "rec-1",
      persona: "default",
    });
    expect(Number.isInteger(ev.payload.latency_ms)).toBe(true);
    const u = await ctx.usage.get({ user: "alice" });
    expect(u).toMatchObject({ requests_today: 1, tokens_today: r.tokens_used });
  });

  it("counts history summaries like any call: in usage under the channel and the system user, in the global budget, with events", async () => {
    const providers = recordingProviders();
    ctx = await createMemoryContext({
      providers,
      clock: frozen(),
      config: { memory: { summarize_after: 4, history_messages: 2 } as never, limits: { exempt_users: ["ops"] } as never },
    });
    let chatTokens = 0;
    for (let i = 0; i < 3; i++) chatTokens += (await chat.handle(chatReq(`turn ${i} about the weather`), ctx)).tokens_used!;
    // Waits for the summary, then returns the pool: the day's budget is what was spent.
    await ctx.close();
    const summary = ctx.recorded.find((e) => e.name === "response" && e.payload.endpoint === "memory.summary");
    expect(summary?.payload).toMatchObject({ user: SYSTEM_USER, channel: "#general", provider: "recorder" });
    const spent = summary!.payload.tokens_used as number;
    expect(spent).toBeGreaterThan(0);
    expect(providers.calls[3].options).toMatchObject({ temperature: 0.3, max_tokens: 400 });
    expect(await ctx.usage.get({ user: SYSTEM_USER })).toMatchObject({ requests_today: 1, tokens_today: spent });
    expect(await ctx.usage.get({ channel: "#general" })).toMatchObject({ requests_today: 4, tokens_today: chatTokens + spent });
    expect(await ctx.usage.get({})).toMatchObject({ requests_today: 4, tokens_today: chatTokens + spent });
    expect((await ctx.limiter.remaining("ops")).tokens_today).toBe(1_000_000 - chatTokens - spent);
  });

  it("a history summary is admitted against the global budget like any call", async () => {
    const providers = recordingProviders();
    ctx = await createMemoryContext({ providers, config: { limits: { global_tokens_per_day: 100 } as never } });
    const messages = [{ role: "user" as const, content: "alice: hi" }];
    await expect(summarizeHistory(ctx, { channel: "#general", messages })).rejects.toMatchObject({ code: "quota_exceeded" });
    expect(providers.calls).toHaveLength(0);
    expect(ctx.recorded.find((e) => e.name === "error")?.payload).toMatchObject({
      user: SYSTEM_USER,
      channel: "#general",
      error_type: "quota",
      endpoint: "memory.summary",
    });
  });
});

describe("rosey.llm.complete", () => {
  it("passes messages, temperature and max_tokens through", async () => {
    const providers = recordingProviders();
    ctx = await createMemoryContext({ providers });
    const req = complete.request.parse({ messages: [{ role: "user", content: "2+2?" }], temperature: 0.1, max_tokens: 20, user: "u" });
    const r = await complete.handle(req, ctx);
    expect(r).toMatchObject({ success: true, content: "echo: 2+2?", model: "rec-1" });
    expect(providers.calls[0].options).toMatchObject({ temperature: 0.1, max_tokens: 20 });
  });

  it("refuses an unknown forced provider as a validation error before counting it", async () => {
    const providers = recordingProviders();
    ctx = await createMemoryContext({ providers, clock: frozen(), config: { limits: { user_per_minute: 1 } as never } });
    const bad = complete.request.parse({ messages: [{ role: "user", content: "x" }], provider: "nope", user: "u" });
    await expect(complete.handle(bad, ctx)).rejects.toMatchObject({ code: "validation" });
    expect(providers.calls).toHaveLength(0);
    const ok = complete.request.parse({ messages: [{ role: "user", content: "x" }], user: "u" });
    expect((await complete.handle(ok, ctx)).success).toBe(true);
  });

  it("works with the offline provider and no user or channel", async () => {
    ctx = await createMemoryContext();
    const r = await complete.handle(complete.request.parse({ messages: [{ role: "user", content: "ping" }] }), ctx);
    expect(r).toMatchObject({ success: true, provider: "offline", content: "[offline] ping" });
    expect(r.tokens_used).toBeGreaterThan(0);
  });

  it("refuses when the global token budget is spent", async () => {
    ctx = await createMemoryContext({ config: { limits: { global_tokens_per_day: 10 } as never } });
    await expect(
      complete.handle(complete.request.parse({ messages: [{ role: "user", content: "a long question" }], max_tokens: 100 }), ctx),
    ).rejects.toMatchObject({ code: "quota_exceeded" });
    expect(ctx.recorded.find((e) => e.name === "error")?.payload).toMatchObject({ error_type: "quota", provider: "offline" });
  });
});

describe("rosey.llm.summarize", () => {
  it("sends the concise prompt at temperature 0.3 and bounds the summary to max_length words", async () => {
    const providers = recordingProviders(() => Array.from({ length: 80 }, (_, i) => `w${i}`).join(" "));
    ctx = await createMemoryContext({ providers });
    const r = await summarize.handle(summarize.request.parse({ text: "Some long text about cats.", max_length: 25 }), ctx);
    expect(r.success).toBe(true);
    expect(r.summary!.split(/\s+/).length).toBeLessThanOrEqual(25);
    expect(providers.calls[0].messages.map((m) => m.content).join("\n")).toContain("Summarize in 25 words or less:");
    expect(providers.calls[0].options.temperature).toBe(0.3);
  });

  it("asks for bullets in the bullets style", async () => {
    const providers = recordingProviders(() => "- one\n- two");
    ctx = await createMemoryContext({ providers });
    const r = await summarize.handle(summarize.request.parse({ text: "abc def", style: "bullets" }), ctx);
    expect(r.summary).toBe("- one\n- two");
    expect(providers.calls[0].messages.map((m) => m.content).join("\n")).toMatch(/bullet/i);
  });
});

describe("rosey.llm.status", () => {
  it("reports providers, version, uptime and today's totals", async () => {
    const now = Date.now();
    ctx = await createMemoryContext({ clock: { now: () => now } });
    ctx.instance.started_at = now - 90_000;
    await complete.handle(complete.request.parse({ messages: [{ role: "user", content: "hello" }] }), ctx);
    const r = await status.handle(status.request.parse({}), ctx);
    expect(r).toMatchObject({ success: true, healthy: true, provider: "offline", rate_limited: false, uptime_seconds: 90, requests_today: 1 });
    expect(r.tokens_today).toBeGreaterThan(0);
    expect(r.providers).toEqual([expect.objectContaining({ name: "offline", healthy: true })]);
  });

  it("says rate_limited when the global budget is spent, or the given user is limited", async () => {
    ctx = await createMemoryContext({ clock: frozen(), config: { limits: { user_per_minute: 1, global_tokens_per_day: 100_000 } as never } });
    await complete.handle(complete.request.parse({ messages: [{ role: "user", content: "x" }], user: "u" }), ctx);
    expect((await status.handle(status.request.parse({ user: "u" }), ctx)).rate_limited).toBe(true);
    expect((await status.handle(status.request.parse({ user: "v" }), ctx)).rate_limited).toBe(false);
  });
});
