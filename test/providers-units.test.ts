// Pure parts of the provider layer: failure classification, Retry-After, secret scrubbing,
// backoff, the circuit breaker, and mapping a chat-completions body.
import { describe, expect, it } from "vitest";
import {
  backoffDelay,
  classifyFailure,
  estimateMessagesTokens,
  Health,
  mapChatResponse,
  parseRetryAfter,
  redactSecrets,
  statusKind,
} from "../lib/providers";

const headers = (h: Record<string, string>) => new Headers(h);

describe("statusKind", () => {
  it("retries rate limits, server faults and request timeouts", () => {
    for (const s of [408, 409, 429, 500, 502, 503, 504, 529]) expect(statusKind(s)).toBe("retryable");
  });
  it("never retries requests the server will keep refusing", () => {
    for (const s of [400, 401, 403, 404, 422]) expect(statusKind(s)).toBe("final");
  });
});

describe("classifyFailure", () => {
  it("names the reason and carries the status", () => {
    expect(classifyFailure({ status: 429, message: "slow down" })).toMatchObject({ kind: "retryable", reason: "rate_limited", status: 429, message: "HTTP 429: slow down" });
    expect(classifyFailure({ status: 503 }).reason).toBe("server_error");
    expect(classifyFailure({ status: 401 })).toMatchObject({ kind: "final", reason: "auth" });
    expect(classifyFailure({ status: 404 })).toMatchObject({ kind: "final", reason: "not_found" });
    expect(classifyFailure({ status: 422 })).toMatchObject({ kind: "final", reason: "client_error" });
  });
  it("treats transport trouble and broken bodies as retryable", () => {
    expect(classifyFailure({ timeout: true })).toMatchObject({ kind: "retryable", reason: "timeout" });
    expect(classifyFailure({ connection: true, message: "ECONNREFUSED" })).toMatchObject({ kind: "retryable", reason: "connection", message: "connection failed: ECONNREFUSED" });
    expect(classifyFailure({ malformed: true })).toMatchObject({ kind: "retryable", reason: "malformed" });
  });
  it("treats a passed deadline, a cancelled caller and an unsendable request as final", () => {
    expect(classifyFailure({ aborted: "deadline" })).toMatchObject({ kind: "final", reason: "deadline" });
    expect(classifyFailure({ aborted: "caller" })).toMatchObject({ kind: "final", reason: "aborted" });
    expect(classifyFailure({ unsendable: true })).toMatchObject({ kind: "final", reason: "client_error" });
  });
  it("keeps the server's Retry-After", () => {
    expect(classifyFailure({ status: 429, headers: headers({ "retry-after": "7" }) }).retry_after_ms).toBe(7_000);
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2025-06-01T12:00:00Z");
  it("reads seconds, fractional seconds and retry-after-ms", () => {
    expect(parseRetryAfter(headers({ "retry-after": "3" }), now)).toBe(3_000);
    expect(parseRetryAfter(headers({ "retry-after": "0.5" }), now)).toBe(500);
    expect(parseRetryAfter(headers({ "retry-after-ms": "1200", "retry-after": "9" }), now)).toBe(1_200);
  });
  it("reads an HTTP date, and a date in the past as no wait", () => {
    expect(parseRetryAfter(headers({ "retry-after": "Sun, 01 Jun 2025 12:00:30 GMT" }), now)).toBe(30_000);
    expect(parseRetryAfter(headers({ "retry-after": "Sun, 01 Jun 2025 11:00:00 GMT" }), now)).toBe(0);
  });
  it("ignores absent or unreadable values", () => {
    expect(parseRetryAfter(headers({}), now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter(headers({ "retry-after": "soon" }), now)).toBeUndefined();
    expect(parseRetryAfter(headers({ "retry-after": "-3" }), now)).toBeUndefined();
  });
});

describe("redactSecrets", () => {
  it("removes the configured key and anything key-shaped", () => {
    const out = redactSecrets("bad key my-private-key-123 and sk-proj-abc123def456 via Bearer xyz.789", ["my-private-key-123"]);
    expect(out).toBe("bad key [redacted] and [redacted] via Bearer [redacted]");
  });
  it("leaves ordinary text and short placeholder keys alone", () => {
    expect(redactSecrets("none of this is secret", ["none"])).toBe("none of this is secret");
  });
});

describe("backoffDelay", () => {
  const b = { base_ms: 100, max_ms: 1_000 };
  it("doubles the ceiling per retry and caps it (full jitter below the ceiling)", () => {
    const top = () => 0.999999;
    expect(backoffDelay(0, b, top)).toBe(99);
    expect(backoffDelay(1, b, top)).toBe(199);
    expect(backoffDelay(2, b, top)).toBe(399);
    expect(backoffDelay(10, b, top)).toBe(999);
    expect(backoffDelay(3, b, () => 0)).toBe(0);
  });
});

describe("Health (circuit breaker)", () => {
  const clock = () => {
    let t = 1_000_000;
    return { now: () => t, advance: (ms: number) => void (t += ms) };
  };

  it("opens after the threshold, half-opens after the cooldown, closes on success", () => {
    const c = clock();
    const h = new Health(3, 10_000, c);
    h.failure("a");
    h.failure("b");
    expect(h.state()).toBe("closed");
    h.failure("c");
    expect(h.snapshot()).toMatchObject({ state: "open", consecutive_failures: 3, cooldown_until: c.now() + 10_000, last_error: "c" });
    expect(h.acquire()).toBe(false);
    c.advance(10_000);
    expect(h.state()).toBe("half_open");
    expect(h.acquire()).toBe(true);
    expect(h.acquire()).toBe(false); // one probe at a time
    h.success();
    expect(h.snapshot()).toMatchObject({ state: "closed", consecutive_failures: 0 });
  });

  it("re-opens when the probe fails, and frees the probe slot on a neutral outcome", () => {
    const c = clock();
    const h = new Health(1, 5_000, c);
    h.failure("down");
    c.advance(5_000);
    expect(h.acquire()).toBe(true);
    h.neutral();
    expect(h.available()).toBe(true);
    expect(h.acquire()).toBe(true);
    h.failure("still down");
    expect(h.snapshot()).toMatchObject({ state: "open", cooldown_until: c.now() + 5_000 });
  });
});

describe("mapChatResponse", () => {
  const messages = [{ role: "user" as const, content: "hi" }];
  it("takes tokens from usage when both counts are there", () => {
    const body = { model: "m-1", choices: [{ message: { content: "yo" }, finish_reason: "length" }], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } };
    expect(mapChatResponse(body, messages, "p", "m")).toEqual({
      content: "yo",
      tokens: { prompt: 5, completion: 2, total: 7 },
      tokens_reported: true,
      provider: "p",
      model: "m-1",
      finish_reason: "length",
    });
  });
  it("estimates when usage is partial, and falls back to the configured model", () => {
    const r = mapChatResponse({ choices: [{ message: { content: "yo" } }], usage: { prompt_tokens: 5 } }, messages, "p", "m");
    expect(r).toMatchObject({ tokens_reported: false, model: "m", finish_reason: "stop" });
    expect(r!.tokens.prompt).toBe(estimateMessagesTokens(messages));
  });
  it("uses a refusal as the content when there is no content", () => {
    expect(mapChatResponse({ choices: [{ message: { content: null, refusal: "I can't help with that." } }] }, messages, "p", "m")!.content).toBe("I can't help with that.");
  });
  it("rejects bodies that are not chat completions", () => {
    for (const body of [null, "text", [], {}, { choices: [] }, { choices: [{}] }, { choices: [{ message: { content: 42 } }] }]) {
      expect(mapChatResponse(body, messages, "p", "m")).toBeNull();
    }
  });
});
