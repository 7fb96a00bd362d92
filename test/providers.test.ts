// The provider registry against real local OpenAI-compatible servers: fallback order,
// cooldown and half-open recovery, forced providers, the errors a caller sees, status.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { defaultConfig, loadConfig, type ConfigInput } from "../lib/config";
import type { Clock } from "../lib/context";
import { isRoseyError, type RoseyError } from "../lib/errors";
import { silentLogger } from "../lib/log";
import { createProviders, OFFLINE_PREFIX } from "../lib/providers";
import type { Message } from "../lib/schemas";
import { rejectionOf } from "./helpers/assert";
import { refusedUrl, startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";

const KEY = "sk-registry-secret-abcdef123456";
const messages: Message[] = [
  { role: "system", content: "You are Rosey." },
  { role: "user", content: "what is the tide?" },
];

/** A clock the test moves by hand, so cooldowns pass without waiting. */
function manualClock(start = Date.parse("2025-06-01T12:00:00Z")): Clock & { advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

type Defs = NonNullable<NonNullable<ConfigInput["providers"]>["defs"]>;

function openaiDef(url: string, model: string, over: Partial<Defs[string]> = {}): Defs[string] {
  return { kind: "openai", base_url: url, api_key: KEY, model, timeout_ms: 3_000, max_retries: 0, ...over };
}

function registry(chain: string[], defs: Defs, opts: { clock?: Clock; threshold?: number; cooldown_ms?: number; deadline_ms?: number } = {}) {
  const config = defaultConfig({
    providers: {
      chain,
      defs: { offline: { kind: "offline", model: "offline-echo-1" }, ...defs },
      failure_threshold: opts.threshold ?? 2,
      cooldown_ms: opts.cooldown_ms ?? 30_000,
      deadline_ms: opts.deadline_ms ?? 10_000,
    },
  });
  return createProviders(config, { log: silentLogger, clock: opts.clock ?? manualClock(), backoff: { base_ms: 10, max_ms: 20 } });
}

/** The RoseyError a call rejects with (fails the test when it resolves). */
const rejection = (p: Promise<unknown>): Promise<RoseyError> => rejectionOf(p, isRoseyError);

let server: FakeOpenAI;
beforeAll(async () => {
  server = await startOpenAIServer();
});
afterAll(() => server.close());
beforeEach(() => {
  server.requests.length = 0;
  server.setDefault({ kind: "reply" });
});

describe("provider fallback chain", () => {
  it("answers from the first provider when it is healthy and leaves the rest alone", async () => {
    const p = registry(["openai", "second", "offline"], { openai: openaiDef(server.url, "m-first"), second: openaiDef(server.url, "m-second") });
    const c = await p.complete(messages);
    expect(c.provider).toBe("openai");
    expect(server.chats().map((r) => r.body.model)).toEqual(["m-first"]);
  });

  it("moves on in chain order: openai, then second, then offline", async () => {
    server.setDefault({ kind: "error", status: 500 });
    const p = registry(["openai", "second", "offline"], { openai: openaiDef(server.url, "m-first"), second: openaiDef(server.url, "m-second") });
    const c = await p.complete(messages);
    expect(c.provider).toBe("offline");
    expect(c.content.startsWith(OFFLINE_PREFIX)).toBe(true);
    expect(server.chats().map((r) => r.body.model)).toEqual(["m-first", "m-second"]);
  });

  it("uses the second provider when the first refuses connections", async () => {
    const p = registry(["openai", "second"], { openai: openaiDef(await refusedUrl(), "m-first"), second: openaiDef(server.url, "m-second") });
    const c = await p.complete(messages);
    expect(c).toMatchObject({ provider: "second", model: "m-second" });
  });

  it("reports tokens from the usage block, or estimated ones when it is missing", async () => {
    const p = registry(["openai"], { openai: openaiDef(server.url, "m") });
    server.script({ kind: "reply", usage: { prompt_tokens: 40, completion_tokens: 9, total_tokens: 49 } }, { kind: "reply", usage: false });
    const reported = await p.complete(messages);
    expect(reported.tokens).toEqual({ prompt: 40, completion: 9, total: 49 });
    expect(reported.tokens_reported).toBe(true);
    const estimated = await p.complete(messages);
    expect(estimated.tokens_reported).toBe(false);
    expect(estimated.tokens.total).toBeGreaterThan(0);
    expect(p.estimateTokens("hello world")).toBeGreaterThan(0);
  });

  it("measures latency around the whole call, retries included", async () => {
    const p = registry(["openai"], { openai: openaiDef(server.url, "m", { max_retries: 1 }) });
    server.script({ kind: "error", status: 500 }, { kind: "reply", delay_ms: 200 });
    const c = await p.complete(messages);
    expect(c.latency_ms).toBeGreaterThanOrEqual(190);
    expect(server.chats()).toHaveLength(2);
  });

  it("sends the temperature and system prompt to the provider", async () => {
    const p = registry(["openai"], { openai: openaiDef(server.url, "m") });
    await p.complete(messages, { temperature: 1.3, max_tokens: 100 });
    expect(server.chats()[0].body).toMatchObject({ temperature: 1.3, max_tokens: 100, messages: [{ role: "system", content: "You are Rosey." }, messages[1]] });
  });
});

describe("provider health", () => {
  it("cools a provider down after failure_threshold consecutive failures and stops calling it", async () => {
    const clock = manualClock();
    server.setDefault({ kind: "error", status: 503 });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m") }, { clock, threshold: 2, cooldown_ms: 30_000 });
    await p.complete(messages);
    expect(p.status()[0]).toMatchObject({ name: "openai", healthy: true, consecutive_failures: 1 });
    await p.complete(messages);
    expect(server.chats()).toHaveLength(2);

    const [openai, offline] = p.status();
    expect(openai).toMatchObject({ name: "openai", model: "m", healthy: false, consecutive_failures: 2 });
    expect(openai.cooldown_until).toBe(new Date(clock.now() + 30_000).toISOString());
    expect(openai.last_error).toMatch(/HTTP 503/);
    expect(offline).toMatchObject({ name: "offline", healthy: true });
    expect(p.current()).toEqual({ name: "offline", model: "offline-echo-1" });

    const c = await p.complete(messages);
    expect(c.provider).toBe("offline");
    expect(server.chats()).toHaveLength(2); // no call while cooling down
  });

  it("heals through one half-open probe once the cooldown is over", async () => {
    const clock = manualClock();
    server.setDefault({ kind: "error", status: 500 });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m") }, { clock, threshold: 2, cooldown_ms: 5_000 });
    await p.complete(messages);
    await p.complete(messages);
    clock.advance(5_001);
    expect(p.current().name).toBe("openai"); // half-open: the next call is the probe

    server.setDefault({ kind: "reply" });
    const c = await p.complete(messages);
    expect(c.provider).toBe("openai");
    expect(p.status()[0]).toMatchObject({ healthy: true, consecutive_failures: 0 });
    expect(p.status()[0].cooldown_until).toBeUndefined();
  });

  it("re-opens for another cooldown when the probe fails", async () => {
    const clock = manualClock();
    server.setDefault({ kind: "error", status: 500 });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m") }, { clock, threshold: 2, cooldown_ms: 5_000 });
    await p.complete(messages);
    await p.complete(messages);
    clock.advance(5_001);
    const c = await p.complete(messages);
    expect(c.provider).toBe("offline");
    expect(server.chats()).toHaveLength(3); // the probe went out
    expect(p.status()[0]).toMatchObject({ healthy: false, consecutive_failures: 3, cooldown_until: new Date(clock.now() + 5_000).toISOString() });
    await p.complete(messages);
    expect(server.chats()).toHaveLength(3); // cooling down again
  });

  it("lets only one probe through while it is in flight", async () => {
    const clock = manualClock();
    server.setDefault({ kind: "error", status: 500 });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m") }, { clock, threshold: 1, cooldown_ms: 1_000 });
    await p.complete(messages);
    clock.advance(1_001);
    server.setDefault({ kind: "reply", delay_ms: 300 });
    const [a, b] = await Promise.all([p.complete(messages), p.complete(messages)]);
    expect([a.provider, b.provider].sort()).toEqual(["offline", "openai"]);
    expect(server.chats()).toHaveLength(2); // the first failure + one probe
  });

  it("does not count a rejected request (400) against the provider and does not fall back", async () => {
    server.setDefault({ kind: "error", status: 400, message: "max_tokens is too large" });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m") }, { threshold: 1 });
    const err = await rejection(p.complete(messages));
    expect(err.code).toBe("provider_error");
    expect(err.provider).toBe("openai");
    // The kind and status, not the upstream text (which goes to the log only).
    expect(err.message).toBe("Provider openai: client_error (HTTP 400) rejected the request");
    expect(p.status()[0]).toMatchObject({ healthy: true, consecutive_failures: 0 });
  });

  it("counts a bad key (401) against the provider and falls back", async () => {
    server.setDefault({ kind: "error", status: 401, message: "invalid key" });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m") }, { threshold: 1 });
    const c = await p.complete(messages);
    expect(c.provider).toBe("offline");
    expect(p.status()[0]).toMatchObject({ healthy: false, consecutive_failures: 1 });
  });
});

describe("forced provider (complete.provider)", () => {
  it("goes to the named provider even when an earlier one is healthy", async () => {
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m") });
    const c = await p.complete(messages, { provider: "offline" });
    expect(c.provider).toBe("offline");
    expect(server.chats()).toHaveLength(0);
  });

  it("fails cleanly with provider_unavailable when the named provider is cooling down", async () => {
    const clock = manualClock();
    server.setDefault({ kind: "error", status: 500 });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m") }, { clock, threshold: 1, cooldown_ms: 20_000 });
    await p.complete(messages);
    const err = await rejection(p.complete(messages, { provider: "openai" }));
    expect(err.code).toBe("provider_unavailable");
    expect(err.provider).toBe("openai");
    expect(err.message).toMatch(/openai/);
    expect(err.message).toMatch(/cooling down/);
    expect(err.retry_after).toBe(20);
    expect(server.chats()).toHaveLength(1);
  });

  it("does not fall back when the named provider fails", async () => {
    server.setDefault({ kind: "error", status: 502 });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m") });
    const err = await rejection(p.complete(messages, { provider: "openai" }));
    expect(err.code).toBe("provider_unavailable");
    expect(err.message).toMatch(/HTTP 502/);
  });

  it("rejects an unknown provider as a validation error naming it", async () => {
    const p = registry(["offline"], {});
    const err = await rejection(p.complete(messages, { provider: "gpt-nonexistent" }));
    expect(err.code).toBe("validation");
    expect(err.message).toContain("gpt-nonexistent");
  });

  it("rejects a defined provider that is not in the chain", async () => {
    const p = registry(["offline"], { ollama: openaiDef(server.url, "llama") });
    const err = await rejection(p.complete(messages, { provider: "ollama" }));
    expect(err.code).toBe("validation");
    expect(err.message).toMatch(/ollama.*not enabled/);
  });
});

describe("when no provider answers", () => {
  it("throws provider_unavailable naming the provider and what happened", async () => {
    server.setDefault({ kind: "error", status: 500 });
    const p = registry(["openai"], { openai: openaiDef(server.url, "m") });
    const err = await rejection(p.complete(messages));
    expect(err.code).toBe("provider_unavailable");
    expect(err.provider).toBe("openai");
    expect(err.message).toMatch(/openai: server_error \(HTTP 500\)/);
  });

  it("throws provider_error when a provider answered with a final error", async () => {
    server.setDefault({ kind: "error", status: 404, message: "model m does not exist" });
    const p = registry(["openai"], { openai: openaiDef(server.url, "m") });
    const err = await rejection(p.complete(messages));
    expect(err.code).toBe("provider_error");
    expect(err.message).toMatch(/openai: not_found \(HTTP 404\)/);
    expect(err.message).not.toMatch(/does not exist/);
  });

  it("says when the next try is worth it once every provider is cooling down", async () => {
    const clock = manualClock();
    server.setDefault({ kind: "error", status: 500 });
    const p = registry(["openai"], { openai: openaiDef(server.url, "m") }, { clock, threshold: 1, cooldown_ms: 9_000 });
    await rejection(p.complete(messages));
    const err = await rejection(p.complete(messages));
    expect(err.code).toBe("provider_unavailable");
    expect(err.retry_after).toBe(9);
    expect(p.status()[0].healthy).toBe(false);
  });

  it("ends with a clean error before the deadline when the first provider hangs, without waiting for its timeout", async () => {
    server.setDefault({ kind: "hang" });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m", { timeout_ms: 60_000 }) }, { deadline_ms: 1_000 });
    const started = Date.now();
    const err = await rejection(p.complete(messages));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(err.code).toBe("provider_unavailable");
    expect(err.message).toMatch(/deadline/);
    expect(p.status()[0].consecutive_failures).toBe(1);
  });

  it("ends with a clean error when the request's own deadline signal fires first", async () => {
    server.setDefault({ kind: "hang" });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m", { timeout_ms: 60_000 }) });
    const err = await rejection(p.complete(messages, { signal: AbortSignal.timeout(300) }));
    expect(err.code).toBe("provider_unavailable");
    expect(err.message).toMatch(/before the request deadline/);
    expect(p.status()[0].consecutive_failures).toBe(1);
  });

  it("treats a host's own timeout reason as a deadline too", async () => {
    server.setDefault({ kind: "hang" });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m", { timeout_ms: 60_000 }) });
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(new Error("request timed out after 300 ms")), 300);
    const err = await rejection(p.complete(messages, { signal: ctl.signal }));
    expect(err.message).toMatch(/deadline/);
  });

  it("ends a cancelled call without holding it against the provider", async () => {
    server.setDefault({ kind: "hang" });
    const p = registry(["openai", "offline"], { openai: openaiDef(server.url, "m", { timeout_ms: 60_000 }) });
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 200);
    const err = await rejection(p.complete(messages, { signal: ctl.signal }));
    expect(err.code).toBe("provider_unavailable");
    expect(err.message).toMatch(/cancelled/);
    expect(p.status()[0]).toMatchObject({ healthy: true, consecutive_failures: 0 });
  });

  it("never shows the API key in status or errors, even when the server echoes it", async () => {
    server.setDefault({ kind: "error", status: 401, message: `Incorrect API key provided: ${KEY}` });
    const p = registry(["openai"], { openai: openaiDef(server.url, "m") });
    const err = await rejection(p.complete(messages));
    expect(err.message).not.toContain(KEY);
    expect(JSON.stringify(p.status())).not.toContain(KEY);
    expect(p.status()[0].last_error).toMatch(/HTTP 401/);
  });
});

describe("configured from the environment", () => {
  it("sends OpenRouter's HTTP-Referer and X-Title headers and the key as a Bearer token", async () => {
    const config = loadConfig({ LLM_PROVIDERS: "openrouter,offline", OPENROUTER_BASE_URL: server.url, OPENROUTER_API_KEY: "sk-or-v1-test-key-42" });
    const p = createProviders(config, { log: silentLogger, clock: manualClock() });
    const c = await p.complete(messages);
    expect(c.provider).toBe("openrouter");
    const [req] = server.chats();
    expect(req.headers.authorization).toBe("Bearer sk-or-v1-test-key-42");
    expect(req.headers["http-referer"]).toBe("https://github.com/rosey-bot/rosey-llm");
    expect(req.headers["x-title"]).toBe("rosey-llm");
    expect(req.body.model).toBe("openai/gpt-4o-mini");
  });

  it("uses the real model with only OPENAI_BASE_URL and OPENAI_API_KEY set", async () => {
    const config = loadConfig({ LLM_PROVIDERS: "openai,offline", OPENAI_BASE_URL: server.url, OPENAI_API_KEY: "sk-test-1234567", OPENAI_MODEL: "gpt-test" });
    const p = createProviders(config, { log: silentLogger, clock: manualClock() });
    expect(p.current()).toEqual({ name: "openai", model: "gpt-test" });
    expect((await p.complete(messages)).model).toBe("gpt-test");
  });

  it("sends requests through an injected fetch", async () => {
    const config = loadConfig({ LLM_PROVIDERS: "openai", OPENAI_BASE_URL: server.url, OPENAI_API_KEY: "sk-test-1234567" });
    const seen: string[] = [];
    const spy: typeof fetch = (input, init) => {
      seen.push(String(input instanceof Request ? input.url : input));
      return fetch(input, init);
    };
    const p = createProviders(config, { log: silentLogger, clock: manualClock(), fetch: spy });
    await p.complete(messages);
    expect(seen).toEqual([`${server.url}/chat/completions`]);
  });

  it("runs offline with the default configuration", async () => {
    const p = createProviders(defaultConfig(), { log: silentLogger, clock: manualClock() });
    const c = await p.complete(messages);
    expect(c).toMatchObject({ provider: "offline", tokens_reported: false });
    expect(p.status()).toEqual([{ name: "offline", model: "offline-echo-1", healthy: true, consecutive_failures: 0 }]);
  });
});
