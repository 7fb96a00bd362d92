// The endpoint wrapper without NATS: decode, validate, time out, shape errors, count stats.
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { RoseyError } from "../lib/errors";
import { ChatResponse } from "../lib/schemas";
import { createEndpoint, isHandlerModule, type HandlerModule } from "../runtime/endpoint";
import { createTestContext } from "./helpers/context";

const enc = new TextEncoder();

function mod(handle: HandlerModule["handle"]): HandlerModule {
  return {
    name: "chat",
    request: z.strictObject({ n: z.number().int().min(1).max(10) }),
    response: ChatResponse,
    handle,
  };
}

/** Sends one request through an endpoint and resolves with what it replied. */
function send(ep: ReturnType<typeof createEndpoint>, data: Uint8Array | string) {
  return new Promise<{ body: any; error?: { code: number; description: string } }>((resolve) => {
    ep.handle({
      data: typeof data === "string" ? enc.encode(data) : data,
      reply: (b, error) => resolve({ body: JSON.parse(new TextDecoder().decode(b)), error }),
    });
  });
}

const ctx = createTestContext();
const opts = { maxRequestBytes: 100, timeoutMs: 200 };

describe("endpoint wrapper", () => {
  it("answers a valid request with the handler's result", async () => {
    const ep = createEndpoint(mod(async (r: any) => ({ success: true, content: `n=${r.n}` })), () => ctx, opts);
    const r = await send(ep, '{"n":3}');
    expect(r.body).toEqual({ success: true, content: "n=3" });
    expect(r.error).toBeUndefined();
    expect(ep.stats.num_requests).toBe(1);
    expect(ep.stats.num_errors).toBe(0);
  });

  it.each([
    ["not json", "{oops", /not valid JSON/],
    ["not utf-8", new Uint8Array([0xff, 0xfe, 0x7b]), /UTF-8/],
    ["an array", "[1,2]", /invalid request/],
    ["a wrong type", '{"n":"3"}', /n: /],
    ["missing field", "{}", /n: /],
    ["out of range", '{"n":11}', /n: /],
    ["unknown field", '{"n":1,"x":2}', /x/],
    ["__proto__ key", '{"n":1,"__proto__":{"admin":true}}', /__proto__/],
  ])("refuses %s with a validation error naming the problem", async (_what, data, re) => {
    let called = false;
    const ep = createEndpoint(mod(async () => ((called = true), { success: true })), () => ctx, opts);
    const r = await send(ep, data);
    expect(r.body.success).toBe(false);
    expect(r.body.error_code).toBe("validation");
    expect(r.body.error).toMatch(re);
    expect(r.body.tokens_used).toBe(0); // shaped like a ChatResponse
    expect(r.error?.code).toBe(400);
    expect(called).toBe(false);
    expect(ep.stats.num_errors).toBe(1);
    expect(ep.stats.errors_by_code.validation).toBe(1);
  });

  it("refuses an oversized body before parsing it", async () => {
    const ep = createEndpoint(mod(async () => ({ success: true })), () => ctx, opts);
    const r = await send(ep, JSON.stringify({ n: 1, pad: "x".repeat(200) }));
    expect(r.body.error_code).toBe("payload_too_large");
    expect(r.error?.code).toBe(413);
  });

  it("turns a RoseyError into its code and status", async () => {
    const ep = createEndpoint(
      mod(async () => {
        throw new RoseyError("rate_limited", "slow down", { retry_after: 7 });
      }),
      () => ctx,
      opts,
    );
    const r = await send(ep, '{"n":1}');
    expect(r.body).toMatchObject({ success: false, error: "slow down", error_code: "rate_limited", retry_after: 7 });
    expect(r.error).toEqual({ code: 429, description: "slow down" });
  });

  it("hides the text of unexpected errors, sync throws and rejections alike", async () => {
    const throwing = createEndpoint(
      mod(() => {
        throw new Error("secret db password in message");
      }),
      () => ctx,
      opts,
    );
    const rejecting = createEndpoint(mod(() => Promise.reject(new TypeError("boom sk-123"))), () => ctx, opts);
    for (const ep of [throwing, rejecting]) {
      const r = await send(ep, '{"n":1}');
      expect(r.body).toMatchObject({ success: false, error: "Internal error", error_code: "internal" });
      expect(JSON.stringify(r.body)).not.toMatch(/secret|sk-123/);
      expect(r.error?.code).toBe(500);
    }
  });

  it("answers a hung handler at the deadline and aborts its signal", async () => {
    let signal: AbortSignal | undefined;
    const ep = createEndpoint(
      mod(() => new Promise(() => {})),
      (s) => ((signal = s), ctx),
      opts,
    );
    const r = await send(ep, '{"n":1}');
    expect(r.body.error).toMatch(/timed out after 200 ms/);
    expect(r.error?.code).toBe(500);
    expect(signal?.aborted).toBe(true);
  });

  it("counts a handler's success:false answer as an error with its status", async () => {
    const ep = createEndpoint(
      mod(async () => ({ success: false, error: "quota", error_code: "quota_exceeded", retry_after: 5 })),
      () => ctx,
      opts,
    );
    const r = await send(ep, '{"n":1}');
    expect(r.error?.code).toBe(429);
    expect(ep.stats.num_errors).toBe(1);
  });

  it("replies internal when a result cannot be serialised", async () => {
    const ep = createEndpoint(mod(async () => ({ success: true, big: BigInt(1) })), () => ctx, opts);
    const r = await send(ep, '{"n":1}');
    expect(r.body.error_code).toBe("internal");
  });

  it("measures the whole async handler time", async () => {
    const ep = createEndpoint(
      mod(() => new Promise((r) => setTimeout(() => r({ success: true }), 50))),
      () => ctx,
      opts,
    );
    await send(ep, '{"n":1}');
    expect(ep.stats.processing_time).toBeGreaterThanOrEqual(45_000_000);
  });

  it("recognises handler modules", () => {
    expect(isHandlerModule(mod(async () => ({})))).toBe(true);
    expect(isHandlerModule({ name: "x", handle() {} })).toBe(false);
    expect(isHandlerModule(null)).toBe(false);
  });
});
