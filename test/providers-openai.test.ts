// The OpenAI-compatible adapter against a real local HTTP server: replies, token
// accounting, what reaches the server, retries and when they stop, Retry-After, deadlines.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ProviderConfig } from "../lib/config";
import { silentLogger } from "../lib/log";
import { createOpenAIProvider, estimateMessagesTokens, estimateTokens, isProviderFailure, type ProviderFailure } from "../lib/providers";
import type { Message } from "../lib/schemas";
import { rejectionOf } from "./helpers/assert";
import { refusedUrl, startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";

const KEY = "sk-test-secret-0123456789";
const messages: Message[] = [
  { role: "system", content: "You are Rosey, a pirate." },
  { role: "user", content: "hello there" },
];

function def(url: string, over: Partial<ProviderConfig> = {}): ProviderConfig {
  return { kind: "openai", base_url: url, api_key: KEY, model: "test-model", timeout_ms: 3_000, max_retries: 2, headers: {}, ...over };
}

function provider(d: ProviderConfig, deadline_ms = 10_000) {
  return createOpenAIProvider({ name: "openai", def: d, deadline_ms, log: silentLogger, backoff: { base_ms: 20, max_ms: 50 } });
}

/** The ProviderFailure a call rejects with (fails the test when it resolves). */
const failure = (p: Promise<unknown>): Promise<ProviderFailure> => rejectionOf(p, isProviderFailure);

let server: FakeOpenAI;
beforeAll(async () => {
  server = await startOpenAIServer();
});
afterAll(() => server.close());
beforeEach(() => {
  server.requests.length = 0;
  server.setDefault({ kind: "reply" });
});

describe("OpenAI-compatible provider", () => {
  it("answers with the model's content and the token counts of the usage block", async () => {
    server.script({ kind: "reply", content: "Ahoy!", usage: { prompt_tokens: 21, completion_tokens: 3, total_tokens: 24 }, model: "test-model-2024" });
    const c = await provider(def(server.url)).complete(messages, {});
    expect(c).toMatchObject({
      content: "Ahoy!",
      tokens: { prompt: 21, completion: 3, total: 24 },
      tokens_reported: true,
      provider: "openai",
      model: "test-model-2024",
      finish_reason: "stop",
    });
    expect(c.latency_ms).toBeGreaterThanOrEqual(0);
  });

  it("estimates tokens when the server sends no usage block", async () => {
    server.script({ kind: "reply", content: "Ahoy matey, fair winds!", usage: false });
    const c = await provider(def(server.url)).complete(messages, {});
    expect(c.tokens_reported).toBe(false);
    expect(c.tokens.prompt).toBe(estimateMessagesTokens(messages));
    expect(c.tokens.completion).toBe(estimateTokens("Ahoy matey, fair winds!"));
    expect(c.tokens.total).toBe(c.tokens.prompt + c.tokens.completion);
  });

  it("sends the system prompt, temperature, max_tokens, model, key and configured headers", async () => {
    const d = def(server.url, { headers: { "X-Title": "rosey-llm", "HTTP-Referer": "https://example.org/rosey" } });
    await provider(d).complete(messages, { temperature: 0.25, max_tokens: 64 });
    const [req] = server.chats();
    expect(req.body).toMatchObject({ model: "test-model", temperature: 0.25, max_tokens: 64, messages });
    expect(req.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(req.headers["x-title"]).toBe("rosey-llm");
    expect(req.headers["http-referer"]).toBe("https://example.org/rosey");
  });

  it("leaves temperature and max_tokens to the server when the caller gives none", async () => {
    await provider(def(server.url)).complete(messages, {});
    expect(server.chats()[0].body).not.toHaveProperty("temperature");
    expect(server.chats()[0].body).not.toHaveProperty("max_tokens");
  });

  it("retries a 500 and succeeds when the server recovers", async () => {
    server.script({ kind: "error", status: 500 }, { kind: "error", status: 503 });
    const c = await provider(def(server.url)).complete(messages, {});
    expect(c.content).toBe("echo: hello there");
    expect(server.chats()).toHaveLength(3);
  });

  it("stops after max_retries and reports the last failure as retryable", async () => {
    server.setDefault({ kind: "error", status: 500 });
    const f = await failure(provider(def(server.url, { max_retries: 2 })).complete(messages, {}));
    expect(server.chats()).toHaveLength(3);
    expect(f.info).toMatchObject({ kind: "retryable", reason: "server_error", status: 500 });
    expect(f.attempts).toBe(3);
  });

  it("makes exactly one request when retries are off", async () => {
    server.setDefault({ kind: "error", status: 502 });
    await failure(provider(def(server.url, { max_retries: 0 })).complete(messages, {}));
    expect(server.chats()).toHaveLength(1);
  });

  for (const status of [400, 401, 403, 404, 422]) {
    it(`never retries a ${status}`, async () => {
      server.setDefault({ kind: "error", status, message: "no" });
      const f = await failure(provider(def(server.url, { max_retries: 3 })).complete(messages, {}));
      expect(server.chats()).toHaveLength(1);
      expect(f.info.kind).toBe("final");
      expect(f.info.status).toBe(status);
    });
  }

  it("waits as long as Retry-After (seconds) asks before retrying a 429", async () => {
    server.script({ kind: "error", status: 429, retry_after: "1" });
    const c = await provider(def(server.url)).complete(messages, {});
    expect(c.content).toBe("echo: hello there");
    const [first, second] = server.chats();
    expect(second.at - first.at).toBeGreaterThanOrEqual(950);
  });

  it("honours Retry-After given as an HTTP date", async () => {
    // HTTP dates have one-second resolution: two seconds ahead is at least one second away.
    const date = new Date(Date.now() + 2_000).toUTCString();
    server.script({ kind: "error", status: 503, retry_after: date });
    await provider(def(server.url)).complete(messages, {});
    const [first, second] = server.chats();
    expect(second.at - first.at).toBeGreaterThanOrEqual(900);
  });

  it("gives up at once when Retry-After lies beyond the deadline", async () => {
    server.setDefault({ kind: "error", status: 429, retry_after: "60" });
    const started = Date.now();
    const f = await failure(provider(def(server.url), 3_000).complete(messages, {}));
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(server.chats()).toHaveLength(1);
    expect(f.info).toMatchObject({ reason: "rate_limited", retry_after_ms: 60_000 });
    expect(f.message).toMatch(/retry in 60 s/);
  });

  it("times out a slow reply and retries it", async () => {
    server.setDefault({ kind: "reply", delay_ms: 2_000 });
    const f = await failure(provider(def(server.url, { timeout_ms: 300, max_retries: 1 })).complete(messages, {}));
    expect(f.info).toMatchObject({ kind: "retryable", reason: "timeout" });
    expect(server.chats()).toHaveLength(2);
  });

  it("times out a server that sends headers and then stalls the body", async () => {
    server.setDefault({ kind: "stall_body" });
    const f = await failure(provider(def(server.url, { timeout_ms: 300, max_retries: 0 })).complete(messages, {}));
    expect(f.info.reason).toBe("timeout");
  });

  it("retries a malformed JSON body and a body that is not a chat completion", async () => {
    server.script({ kind: "malformed" }, { kind: "wrong_shape" });
    const c = await provider(def(server.url)).complete(messages, {});
    expect(c.content).toBe("echo: hello there");
    expect(server.chats()).toHaveLength(3);
  });

  it("reports a malformed body as a retryable failure when retries run out", async () => {
    server.setDefault({ kind: "malformed" });
    const f = await failure(provider(def(server.url, { max_retries: 1 })).complete(messages, {}));
    expect(f.info).toMatchObject({ kind: "retryable", reason: "malformed" });
  });

  it("treats a refused connection as retryable and retries it", async () => {
    const f = await failure(provider(def(await refusedUrl(), { max_retries: 2 })).complete(messages, {}));
    expect(f.info).toMatchObject({ kind: "retryable", reason: "connection" });
    expect(f.attempts).toBe(3);
  });

  it("answers a hanging server with a clean failure before the deadline", async () => {
    server.setDefault({ kind: "hang" });
    const started = Date.now();
    const f = await failure(provider(def(server.url, { timeout_ms: 20_000 }), 800).complete(messages, {}));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(f.info).toMatchObject({ kind: "final", reason: "deadline" });
  });

  it("stops when the caller's signal aborts", async () => {
    server.setDefault({ kind: "hang" });
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 200);
    const f = await failure(provider(def(server.url, { timeout_ms: 20_000 })).complete(messages, { signal: ctl.signal }));
    expect(f.info.reason).toBe("aborted");
  });

  it("stops waiting out a Retry-After when the caller cancels, and says what it was waiting for", async () => {
    server.setDefault({ kind: "error", status: 429, retry_after: "3", message: "slow down" });
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 300);
    const started = Date.now();
    const f = await failure(provider(def(server.url)).complete(messages, { signal: ctl.signal }));
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(f.info.reason).toBe("aborted");
    expect(f.message).toMatch(/last error: HTTP 429: slow down/);
    expect(server.chats()).toHaveLength(1);
  });

  it("keeps the API key out of failure messages even when the server echoes it", async () => {
    server.setDefault({ kind: "error", status: 401, message: `Incorrect API key provided: ${KEY}.` });
    const f = await failure(provider(def(server.url)).complete(messages, {}));
    expect(f.info.reason).toBe("auth");
    expect(f.message).not.toContain(KEY);
    expect(f.message).toContain("[redacted]");
  });

  it("keeps its connection open between calls instead of connecting for each", async () => {
    const p = provider(def(server.url));
    const before = server.connections();
    for (let i = 0; i < 5; i++) await p.complete(messages, {});
    await Promise.all([1, 2, 3].map(() => p.complete(messages, {})));
    expect(server.chats()).toHaveLength(8);
    // One connection for the sequential calls, at most three for the three at once.
    expect(server.connections() - before).toBeLessThanOrEqual(3);
  });

  it("refuses to send a configured header value with a line break, as a final error, without calling the server", async () => {
    const f = await failure(provider(def(server.url, { headers: { "X-Title": "rosey\r\nX-Injected: yes" } })).complete(messages, {}));
    expect(f.info).toMatchObject({ kind: "final", reason: "client_error" });
    expect(f.attempts).toBe(1);
    expect(server.chats()).toHaveLength(0);
  });

  it("lists models at /v1/models (the server side of a health probe)", async () => {
    const res = await fetch(`${server.url}/models`);
    const list = (await res.json()) as { data: Array<{ id: string }> };
    expect(list.data.map((m) => m.id)).toEqual(["test-model"]);
  });
});
