// The chat hot path runs its independent round trips together: the persona read with the
// admission, and the history write with settle and usage. These tests pin down that order
// and that running things together changed nothing a caller can see.
import { describe, expect, it } from "vitest";
import { handle } from "../handlers/chat";
import type { Completion, Ctx, Ticket } from "../lib/context";
import { notFound } from "../lib/errors";
import type { Persona } from "../lib/schemas";
import { createTestContext } from "./helpers/context";

/** A promise with its resolve/reject exposed, to hold an operation open. */
function gate<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const persona: Persona = { name: "default", description: "d", system_prompt: "be nice", builtin: true };
const ticket: Ticket = { ok: true, id: "2026-01-01:1:t", reserved: 600, user: "alice", channel: "#c" };
const reply: Completion = {
  content: "[offline] hi",
  tokens: { prompt: 10, completion: 3, total: 13 },
  tokens_reported: false,
  provider: "offline",
  model: "offline-echo-1",
  finish_reason: "stop",
  latency_ms: 0,
};
const req = { channel: "#c", user: "alice", message: "hi" };

/** A context whose every part logs what it starts and finishes, with overridable parts. */
function traced(parts: Partial<Ctx> = {}) {
  const log: string[] = [];
  const ctx = createTestContext({
    providers: {
      complete: async () => reply,
      status: () => [{ name: "offline", model: "offline-echo-1", healthy: true }],
      current: () => ({ name: "offline", model: "offline-echo-1" }),
      estimateTokens: (t: string) => Math.ceil(t.length / 4),
    },
    memory: {
      context: async () => [{ role: "user", content: "alice: hi" }],
      record: async () => void log.push("record"),
    } as unknown as Ctx["memory"],
    personas: { forChannel: async () => (log.push("persona"), persona) } as unknown as Ctx["personas"],
    limiter: {
      admit: async () => (log.push("admit"), ticket),
      settle: async () => void log.push("settle"),
      release: async () => void log.push("release"),
    } as unknown as Ctx["limiter"],
    usage: { record: async () => void log.push("usage") } as unknown as Ctx["usage"],
    ...parts,
  });
  return { ctx, log };
}

describe("rosey.llm.chat hot path", () => {
  it("reads the channel's persona while admitting, not before", async () => {
    const p = gate<Persona>();
    const started: string[] = [];
    const { ctx } = traced({
      personas: { forChannel: () => (started.push("persona"), p.promise) } as unknown as Ctx["personas"],
    });
    ctx.limiter.admit = async () => (started.push("admit"), ticket);
    const out = handle(req, ctx);
    await new Promise((r) => setTimeout(r, 10));
    // The admission started although the persona read is still open.
    expect(started).toEqual(["persona", "admit"]);
    p.resolve(persona);
    await expect(out).resolves.toMatchObject({ success: true, persona: "default", tokens_used: 13 });
  });

  it("checks an unknown persona override before it costs a request", async () => {
    const { ctx, log } = traced({
      personas: {
        forChannel: async (_c: string, o?: string) => {
          throw notFound(`unknown persona "${o}"`);
        },
      } as unknown as Ctx["personas"],
    });
    await expect(handle({ ...req, persona: "nobody" }, ctx)).rejects.toMatchObject({ code: "not_found" });
    expect(log).not.toContain("admit");
  });

  it("returns the reservation when the persona read fails after admitting", async () => {
    const { ctx, log } = traced({
      personas: { forChannel: async () => Promise.reject(new Error("bucket down")) } as unknown as Ctx["personas"],
    });
    await expect(handle(req, ctx)).rejects.toThrow("bucket down");
    expect(log).toEqual(["admit", "release"]);
  });

  it("refuses without reading history or calling the model when the limiter refuses", async () => {
    const refusal: Ticket = { ok: false, code: "rate_limited", window: "per-minute", retry_after: 7, message: "Rate limit exceeded (per-minute). Retry after 7 seconds." };
    const { ctx, log } = traced();
    ctx.limiter.admit = async () => refusal;
    ctx.memory.context = async () => {
      throw new Error("must not build context");
    };
    const out = await handle(req, ctx);
    expect(out).toMatchObject({ success: false, error_code: "rate_limited", retry_after: 7, tokens_used: 0 });
    expect(log).not.toContain("record");
    expect(ctx.recorded.map((e) => e.name)).toEqual(["error"]);
  });

  it("writes history together with settle and usage, and replies only when all three are stored", async () => {
    const gates = { settle: gate(), usage: gate(), record: gate() };
    const started: string[] = [];
    const { ctx } = traced();
    ctx.limiter.settle = () => (started.push("settle"), gates.settle.promise);
    ctx.usage.record = () => (started.push("usage"), gates.usage.promise);
    ctx.memory.record = () => (started.push("record"), gates.record.promise);
    let done = false;
    const out = handle(req, ctx).then((r) => ((done = true), r));
    await new Promise((r) => setTimeout(r, 10));
    expect(started.sort()).toEqual(["record", "settle", "usage"]);
    gates.settle.resolve();
    gates.usage.resolve();
    await new Promise((r) => setTimeout(r, 10));
    expect(done).toBe(false); // history not yet stored
    gates.record.resolve();
    await expect(out).resolves.toMatchObject({ success: true, content: "[offline] hi" });
    expect(ctx.recorded.map((e) => e.name)).toEqual(["response"]);
  });

  it("fails the request when history cannot be written, after the call was accounted and published", async () => {
    const { ctx, log } = traced();
    ctx.memory.record = async () => Promise.reject(new Error("history write failed"));
    await expect(handle(req, ctx)).rejects.toThrow("history write failed");
    expect(log).toEqual(expect.arrayContaining(["settle", "usage"]));
    expect(ctx.recorded.map((e) => e.name)).toEqual(["response"]);
  });
});
