// Streamed replies in the provider layer: the server-sent events reader, the OpenAI-compatible
// adapter with `stream: true` against a real local HTTP server (pieces, usage or its
// estimate, failures before and after the first piece, a server that does not stream,
// cancellation), the offline provider's word-by-word stream, and the registry's rule:
// fall back before the first piece, never after.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { defaultConfig, type ProviderConfig } from "../lib/config";
import { isRoseyError, type RoseyError } from "../lib/errors";
import { silentLogger } from "../lib/log";
import { createOfflineProvider, createOpenAIProvider, createProviders, estimateMessagesTokens, estimateTokens, isProviderFailure, type ProviderFailure } from "../lib/providers";
import { MAX_LINE_CHARS, sseData } from "../lib/providers/sse";
import type { Message } from "../lib/schemas";
import { rejectionOf } from "./helpers/assert";
import { startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";

const messages: Message[] = [
  { role: "system", content: "You are Rosey." },
  { role: "user", content: "tell me about the sea" },
];
const CONTENT = "The sea is wide, salty and full of fish.";

const enc = new TextEncoder();
/** The events of a body delivered in the given byte pieces. */
async function events(...parts: Array<string | Uint8Array>): Promise<string[]> {
  async function* body() {
    for (const p of parts) yield typeof p === "string" ? enc.encode(p) : p;
  }
  const out: string[] = [];
  for await (const e of sseData(body())) out.push(e);
  return out;
}

describe("server-sent events", () => {
  it("joins data lines of an event, skips comments and other fields, takes CRLF and a last event without a blank line", async () => {
    expect(await events(": keep-alive\n\nevent: x\ndata: a\ndata:b\nid: 1\n\r\ndata: c\r\n\r\ndata: last")).toEqual(["a\nb", "c", "last"]);
  });

  it("reads events and UTF-8 characters cut anywhere between network chunks", async () => {
    const bytes = enc.encode('data: {"t":"café ☕"}\n\ndata: [DONE]\n\n');
    const parts = Array.from(bytes, (b) => Uint8Array.of(b));
    expect(await events(...parts)).toEqual(['{"t":"café ☕"}', "[DONE]"]);
  });

  it("refuses a line longer than its bound instead of buffering it", async () => {
    const long = "x".repeat(MAX_LINE_CHARS / 4);
    await expect(events("data: ", long, long, long, long, long)).rejects.toThrow(/longer than/);
  });
});

function def(url: string, over: Partial<ProviderConfig> = {}): ProviderConfig {
  return { kind: "openai", base_url: url, api_key: "sk-stream-test-0123456789", model: "test-model", timeout_ms: 3_000, max_retries: 2, headers: {}, ...over };
}
const provider = (d: ProviderConfig) => createOpenAIProvider({ name: "openai", def: d, deadline_ms: 10_000, log: silentLogger, backoff: { base_ms: 5, max_ms: 10 } });
const failure = (p: Promise<unknown>): Promise<ProviderFailure> => rejectionOf(p, isProviderFailure);

// Every reply is CONTENT unless a test scripts another; each test sees only its own requests.
let server: FakeOpenAI;
beforeAll(async () => void (server = await startOpenAIServer({ default: { kind: "reply", content: CONTENT } })));
afterAll(() => server.close());
beforeEach(() => void (server.requests.length = 0));

/** A streamed call that keeps its pieces. */
async function streamed(p = provider(def(server.url)), signal?: AbortSignal) {
  const pieces: string[] = [];
  const reply = await p.complete(messages, { max_tokens: 50, onDelta: (d) => pieces.push(d) }, signal);
  return { reply, pieces };
}

describe("OpenAI-compatible provider, streamed", () => {
  it("asks for a stream with usage and passes each piece on as it arrives; the pieces add up to the reply", async () => {
    server.script({ kind: "reply", content: CONTENT, usage: { prompt_tokens: 30, completion_tokens: 11, total_tokens: 41 }, model: "test-model-v2" });
    const { reply, pieces } = await streamed();
    expect(server.chats()[0].body).toMatchObject({ stream: true, stream_options: { include_usage: true }, max_tokens: 50 });
    expect(pieces.length).toBeGreaterThan(5);
    expect(pieces.join("")).toBe(CONTENT);
    expect(reply).toMatchObject({ content: CONTENT, tokens: { prompt: 30, completion: 11, total: 41 }, tokens_reported: true, model: "test-model-v2", finish_reason: "stop" });
  });

  it("estimates the tokens as an unstreamed reply without usage would", async () => {
    server.script({ kind: "reply", content: CONTENT, usage: false }, { kind: "reply", content: CONTENT, usage: false });
    const { reply } = await streamed();
    const whole = await provider(def(server.url)).complete(messages, { max_tokens: 50 });
    expect(reply.tokens_reported).toBe(false);
    expect(reply.tokens).toEqual({ prompt: estimateMessagesTokens(messages), completion: estimateTokens(CONTENT), total: estimateMessagesTokens(messages) + estimateTokens(CONTENT) });
    expect(reply.tokens).toEqual(whole.tokens);
  });

  it("retries a failure that came before the first piece", async () => {
    server.script({ kind: "reply", content: CONTENT, cut_after: 0 }, { kind: "error", status: 503 });
    const { reply, pieces } = await streamed();
    expect(server.chats()).toHaveLength(3);
    expect(pieces.join("")).toBe(CONTENT);
    expect(reply.content).toBe(CONTENT);
  });

  it("never retries once a piece went out: a cut connection fails the call", async () => {
    server.script({ kind: "reply", content: CONTENT, cut_after: 3 });
    const pieces: string[] = [];
    const f = await failure(provider(def(server.url)).complete(messages, { onDelta: (d) => pieces.push(d) }));
    expect(f.info).toMatchObject({ kind: "retryable", reason: "connection" });
    expect(f.attempts).toBe(1);
    expect(server.chats()).toHaveLength(1);
    expect(pieces).toEqual(["The", " sea", " is"]);
  });

  it("bounds the wait for each piece by timeout_ms, not the whole stream", async () => {
    const pieces = Array.from({ length: 10 }, (_, i) => `p${i} `);
    server.script({ kind: "reply", deltas: pieces, interval_ms: 60 }, { kind: "reply", deltas: pieces, stall_after: 4 });
    const quick = provider(def(server.url, { timeout_ms: 300 }));
    // Ten pieces 60 ms apart take twice the timeout, and arrive.
    expect((await streamed(quick)).reply.content).toBe(pieces.join(""));
    // A stream that stops sending is cut, and not retried after its pieces went out.
    const f = await failure(streamed(quick));
    expect(f.info.reason).toBe("timeout");
    expect(server.chats()).toHaveLength(2);
  });

  it("fails on an error event in the stream, without retrying after pieces went out", async () => {
    server.script({ kind: "reply", content: CONTENT, error_after: 2 });
    const f = await failure(streamed());
    expect(f.info).toMatchObject({ reason: "server_error", message: expect.stringContaining("scripted stream error") });
    expect(server.chats()).toHaveLength(1);
  });

  it("fails on a chunk that is not JSON", async () => {
    // A body of its own: a data line that is not JSON.
    const p = createOpenAIProvider({
      name: "openai",
      def: def("http://127.0.0.1:1/v1", { max_retries: 0 }),
      deadline_ms: 5_000,
      log: silentLogger,
      fetch: async () => new Response("data: {not json\n\n", { status: 200, headers: { "content-type": "text/event-stream" } }),
    });
    const f = await failure(p.complete(messages, { onDelta: () => undefined }));
    expect(f.info).toMatchObject({ reason: "malformed", message: expect.stringContaining("not valid JSON") });
  });

  it("takes a server that answers in one piece: the whole content is the one piece", async () => {
    server.script({ kind: "reply", content: CONTENT, ignore_stream: true });
    const { reply, pieces } = await streamed();
    expect(pieces).toEqual([CONTENT]);
    expect(reply.content).toBe(CONTENT);
  });

  it("closes the connection when the caller cancels mid-stream", async () => {
    server.script({ kind: "reply", deltas: Array.from({ length: 200 }, (_, i) => `w${i} `), interval_ms: 20 });
    const ctl = new AbortController();
    const pieces: string[] = [];
    const call = provider(def(server.url)).complete(messages, { onDelta: (d) => (pieces.push(d), pieces.length === 3 && ctl.abort()) }, ctl.signal);
    expect((await failure(call)).info.reason).toBe("aborted");
    for (let i = 0; i < 100 && server.abandoned() === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(server.abandoned()).toBe(1);
    expect(pieces).toHaveLength(3);
  });
});

describe("offline provider, streamed", () => {
  it("sends its reply word by word", async () => {
    const pieces: string[] = [];
    const reply = await createOfflineProvider().complete([{ role: "user", content: "hello  there, sailor" }], { onDelta: (d) => pieces.push(d) });
    expect(pieces).toEqual(["[offline]", " hello", " there,", " sailor"]);
    expect(pieces.join("")).toBe(reply.content);
  });
});

describe("the registry, streamed", () => {
  const registry = () =>
    createProviders(
      defaultConfig({
        providers: {
          chain: ["openai", "offline"],
          defs: { openai: { ...def(server.url), max_retries: 0 }, offline: { kind: "offline", model: "offline-echo-1" } },
          failure_threshold: 5,
          cooldown_ms: 30_000,
          deadline_ms: 10_000,
        },
      }),
      { log: silentLogger, clock: { now: () => Date.now() } },
    );

  it("falls back to the next provider when the first fails before its first piece", async () => {
    server.script({ kind: "error", status: 500 });
    const pieces: string[] = [];
    const reply = await registry().complete(messages, { onDelta: (d) => pieces.push(d) });
    expect(reply.provider).toBe("offline");
    expect(pieces.join("")).toBe(reply.content);
  });

  it("ends the call when the provider fails after a piece, without switching models mid-reply", async () => {
    server.script({ kind: "reply", content: CONTENT, cut_after: 2 });
    const pieces: string[] = [];
    const err = await rejectionOf<RoseyError>(registry().complete(messages, { onDelta: (d) => pieces.push(d) }), isRoseyError);
    expect(err).toMatchObject({ code: "provider_unavailable", provider: "openai", message: "Provider openai: connection failed while the reply was being sent" });
    expect(pieces).toEqual(["The", " sea"]);
  });
});
