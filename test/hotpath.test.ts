// The chat hot path: one owner (lib/llm) runs the admission while the persona and context
// are prepared, and the history write with settle; refusals and failures leave nothing
// held. The last tests count, deterministically, the JetStream operations a chat costs and
// how many round trips it waits for one after another, over the real limiter, usage,
// memory and personas (in-memory buckets whose operations the test releases in rounds).
import { describe, expect, it } from "vitest";
import { handle } from "../handlers/chat";
import { defaultConfig } from "../lib/config";
import type { Completion, Ctx, Ticket } from "../lib/context";
import { notFound } from "../lib/errors";
import { MemoryKv, type KvPutOptions, type KvWriteOptions } from "../lib/kv";
import { createLimiter, LIMITS_TTL_MS } from "../lib/limiter";
import { summarizeHistory } from "../lib/llm";
import { silentLogger } from "../lib/log";
import { createMemory } from "../lib/memory";
import { createPersonas } from "../lib/personas";
import { createProviders } from "../lib/providers";
import type { Persona } from "../lib/schemas";
import { createUsage } from "../lib/usage";
import { createTestContext } from "./helpers/context";

/** A promise with its resolve/reject exposed, to hold an operation open. */
function gate<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const persona: Persona = { name: "default", description: "d", system_prompt: "be nice", builtin: true };
const ticket: Ticket = { ok: true, id: "2024-01-01:x-0:1:t", reserved: 600, user: "alice", channel: "#c" };
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
      complete: async () => (log.push("call"), reply),
      status: () => [{ name: "offline", model: "offline-echo-1", healthy: true }],
      current: () => ({ name: "offline", model: "offline-echo-1" }),
      estimateTokens: (t: string) => Math.ceil(t.length / 4),
    },
    memory: {
      prepare: (channel: string) => ({ channel, done: Promise.resolve(null) }),
      quiet: () => false,
      context: async () => (log.push("context"), [{ role: "user", content: "alice: hi" }]),
      record: async () => void log.push("record"),
    } as unknown as Ctx["memory"],
    personas: { forChannel: async () => (log.push("persona"), persona) } as unknown as Ctx["personas"],
    limiter: {
      admit: async () => (log.push("admit"), ticket),
      extend: async () => (log.push("extend"), ticket),
      settle: async () => void log.push("settle"),
      release: async () => void log.push("release"),
    } as unknown as Ctx["limiter"],
    ...parts,
  });
  return { ctx, log };
}

describe("rosey.llm.chat hot path", () => {
  it("admits while the persona and context are prepared, reserving the context budget", async () => {
    const p = gate<Persona>();
    const started: string[] = [];
    const { ctx } = traced({
      personas: { forChannel: () => (started.push("persona"), p.promise) } as unknown as Ctx["personas"],
    });
    let reserved = 0;
    ctx.limiter.admit = async (r) => (started.push("admit"), (reserved = r.tokens), { ...ticket, reserved: r.tokens });
    const out = handle(req, ctx);
    await new Promise((r) => setTimeout(r, 10));
    // The admission started although the persona read is still open.
    expect(started.sort()).toEqual(["admit", "persona"]);
    expect(reserved).toBe(ctx.config.memory.context_tokens + 512);
    p.resolve(persona);
    await expect(out).resolves.toMatchObject({ success: true, persona: "default", tokens_used: 13 });
  });

  it("reserves the rest before the call when the prepared prompt is larger than its budget", async () => {
    const { ctx, log } = traced({ config: { memory: { context_tokens: 10 } as never } as never });
    ctx.limiter.admit = async (r) => ({ ...ticket, reserved: r.tokens });
    ctx.memory.context = async () => [{ role: "user", content: "x".repeat(400) }];
    let extra = 0;
    ctx.limiter.extend = async (t, n) => (log.push("extend"), (extra = n), { ...t, reserved: t.reserved + n });
    await handle(req, ctx);
    // 3 + (4 + 100) prompt tokens + 512 for the reply, of which 10 + 512 were reserved.
    expect(extra).toBe(107 - 10);
    expect(log.indexOf("extend")).toBeLessThan(log.indexOf("call"));
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

  it("refuses with the contract's error and no model call when the limiter refuses", async () => {
    const refusal: Ticket = { ok: false, code: "rate_limited", window: "per-minute", retry_after: 7, message: "Rate limit exceeded (per-minute). Retry after 7 seconds." };
    const { ctx, log } = traced();
    ctx.limiter.admit = async () => refusal;
    await expect(handle(req, ctx)).rejects.toMatchObject({ code: "rate_limited", retry_after: 7, message: refusal.message });
    expect(log).not.toContain("call");
    expect(log).not.toContain("record");
    expect(ctx.recorded).toMatchObject([{ name: "error", payload: { error_type: "rate_limit", provider: "offline", endpoint: "chat" } }]);
  });

  it("writes history together with settle, and replies only when both are stored", async () => {
    const gates = { settle: gate(), record: gate() };
    const started: string[] = [];
    const { ctx } = traced();
    ctx.limiter.settle = () => (started.push("settle"), gates.settle.promise);
    ctx.memory.record = () => (started.push("record"), gates.record.promise);
    let done = false;
    const out = handle(req, ctx).then((r) => ((done = true), r));
    await new Promise((r) => setTimeout(r, 10));
    expect(started.sort()).toEqual(["record", "settle"]);
    gates.settle.resolve();
    await new Promise((r) => setTimeout(r, 10));
    expect(done).toBe(false); // history not yet stored
    gates.record.resolve();
    await expect(out).resolves.toMatchObject({ success: true, content: "[offline] hi" });
    expect(ctx.recorded.map((e) => e.name)).toEqual(["response"]);
    expect(Number.isInteger(ctx.recorded[0].payload.latency_ms)).toBe(true);
  });

  it("fails the request when history cannot be written, after the call was accounted and published", async () => {
    const { ctx, log } = traced();
    ctx.memory.record = async () => Promise.reject(new Error("history write failed"));
    await expect(handle(req, ctx)).rejects.toThrow("history write failed");
    expect(log).toContain("settle");
    expect(ctx.recorded.map((e) => e.name)).toEqual(["response"]);
  });
});

/** Operations of the buckets, held until the test releases them: one release is one round trip. */
class Rounds {
  held: Array<() => void> = [];
  counts: Record<string, number> = {};
  stepping = false;
  run<T>(what: string, op: () => Promise<T>): Promise<T> {
    if (!this.stepping) return op();
    this.counts[what] = (this.counts[what] ?? 0) + 1;
    return new Promise<T>((res, rej) => this.held.push(() => void op().then(res, rej)));
  }
}

/** An in-memory bucket whose reads and writes go through `rounds` (watches do not: they are pushed). */
class SteppedKv extends MemoryKv {
  constructor(bucket: string, private readonly rounds: Rounds) {
    super(bucket);
  }
  private short = () => this.bucket.replace("ROSEY_LLM_", "");
  override get(k: string) {
    return this.rounds.run(`read ${this.short()}`, () => super.get(k));
  }
  override put(k: string, v: Uint8Array, o?: KvPutOptions) {
    return this.rounds.run(`write ${this.short()}`, () => super.put(k, v, o));
  }
  override create(k: string, v: Uint8Array, o?: KvWriteOptions) {
    return this.rounds.run(`write ${this.short()}`, () => super.create(k, v, o));
  }
  override update(k: string, v: Uint8Array, r: number, o?: KvWriteOptions) {
    return this.rounds.run(`write ${this.short()}`, () => super.update(k, v, r, o));
  }
  override delete(k: string, o?: Pick<KvPutOptions, "within">) {
    return this.rounds.run(`delete ${this.short()}`, () => super.delete(k, o));
  }
  override keys(f?: string) {
    return this.rounds.run(`list ${this.short()}`, () => super.keys(f));
  }
  // A group of keys read whole (a channel new here) or checked for changes since the last read.
  override snapshot(f: string) {
    return this.rounds.run(`load ${this.short()}`, () => super.snapshot(f));
  }
  override changes(f: string, after: number) {
    return this.rounds.run(`check ${this.short()}`, () => super.changes(f, after));
  }
}

/**
 * The service's parts over stepped buckets, as runtime/context.ts builds them; the move of
 * legacy persona selections finished (an empty bucket has none), unless `moving`.
 */
async function steppedService(moving = false) {
  const rounds = new Rounds();
  const config = defaultConfig({ log: { level: "silent" } });
  const clock = { now: () => Date.parse("2024-05-01T10:00:00Z") };
  const base = createTestContext({ clock });
  const providers = createProviders(config, { log: silentLogger, clock });
  let ctx!: Ctx;
  const memory = createMemory({
    kv: new SteppedKv("ROSEY_LLM_MEMORY", rounds),
    config,
    clock,
    events: base.events,
    providers,
    log: silentLogger,
    instance: "hot",
    summarizer: (r) => summarizeHistory(ctx, r),
  });
  // A channel's rate-limit document lies among its memory keys (lib/memory/limits-doc.ts).
  const limits = memory.channelLimits(new SteppedKv("ROSEY_LLM_LIMITS", rounds), LIMITS_TTL_MS / 1000);
  const limiter = createLimiter({ kv: limits, config, clock, events: base.events, log: silentLogger, instance: "hot" });
  const usage = createUsage({ kv: limits, config, clock, log: silentLogger, pending: limiter.pendingUsage });
  const personas = createPersonas({ kv: new SteppedKv("ROSEY_LLM_PERSONAS", rounds), selections: memory.selections, config, log: silentLogger });
  if (!moving) expect(await personas.move.step()).toBe(true);
  ctx = { ...base, config, clock, providers, limiter, usage, personas, memory };
  /** One chat, releasing held operations a round at a time: its round trips in sequence and its operations. */
  const chat = async (user: string, channel: string) => {
    rounds.stepping = true;
    rounds.counts = {};
    const events = base.recorded.length;
    let done = false;
    const out = handle({ channel, user, message: `message from ${user}` }, ctx).finally(() => (done = true));
    let sequential = 0;
    for (;;) {
      for (let i = 0; i < 20 && !done; i++) await new Promise((r) => setImmediate(r));
      if (done || rounds.held.length === 0) break;
      sequential++;
      rounds.held.splice(0).forEach((go) => go());
    }
    // Background work the chat started (its channel's summarization check) is its own, not the next chat's.
    rounds.stepping = false;
    rounds.held.splice(0).forEach((go) => go());
    await out;
    await memory.settled();
    return { sequential, ops: { ...rounds.counts, "event publish": base.recorded.length - events } };
  };
  return { chat, personas, close: () => limiter.close() };
}

describe("rosey.llm.chat: JetStream operations and round trips", () => {
  it("a chat of a user and channel this instance has served waits for 2 round trips and costs 6 operations, none a read", async () => {
    const svc = await steppedService();
    for (let i = 0; i < 15; i++) await svc.chat(`u${i % 5}`, `#c${i % 3}`);
    const warm = await svc.chat("u0", "#c0");
    expect(warm.sequential).toBe(2);
    // Admission: the user's and the channel's documents (the channel's usage of earlier
    // calls rides along); the channel's, written among its memory keys on the condition that
    // nothing else under them changed, proves the channel current (its history, memories and
    // persona selection), so the context needs no read. Settle: the user's document and this
    // instance's spend; the exchange goes to history in the same round trip, conditioned like
    // the admission; the response event is not awaited.
    expect(warm.ops).toEqual({ "write LIMITS": 3, "write MEMORY": 2, "event publish": 1 });
    await svc.close();
  });

  it("after a write that proves nothing (a persona selected), the next chat reads the channel once, after its admission", async () => {
    const svc = await steppedService();
    for (let i = 0; i < 15; i++) await svc.chat(`u${i % 5}`, `#c${i % 3}`);
    await svc.personas.select("#c0", "concise");
    const next = await svc.chat("u0", "#c0");
    expect(next.sequential).toBe(3);
    expect(next.ops).toEqual({ "check MEMORY": 1, "write LIMITS": 3, "write MEMORY": 2, "event publish": 1 });
    const after = await svc.chat("u0", "#c0");
    expect(after.sequential).toBe(2);
    expect(after.ops).toEqual({ "write LIMITS": 3, "write MEMORY": 2, "event publish": 1 });
    await svc.close();
  });

  it("a first chat of a user and channel reads both documents first: 3 round trips", async () => {
    const svc = await steppedService();
    await svc.chat("someone", "#elsewhere");
    const cold = await svc.chat("newcomer", "#new");
    expect(cold.sequential).toBe(3);
    // The user's document; the channel's where it is kept and where earlier versions kept it
    // (limits-doc.ts), at once; the channel is loaded for the context alongside, and again after
    // its first exchange (it held nothing, so it was not kept).
    expect(cold.ops).toEqual({ "load MEMORY": 2, "read LIMITS": 2, "read MEMORY": 1, "write LIMITS": 3, "write MEMORY": 2, "event publish": 1 });
    await svc.close();
  });

  it("a channel that selected a defined persona also checks the definitions, in the same round trip", async () => {
    const svc = await steppedService();
    await svc.personas.define({ name: "guide", description: "", system_prompt: "Guide." });
    await svc.personas.select("#c0", "guide");
    await svc.chat("u0", "#c0");
    const warm = await svc.chat("u0", "#c0");
    expect(warm.sequential).toBe(2);
    expect(warm.ops).toEqual({ "check PERSONAS": 1, "write LIMITS": 3, "write MEMORY": 2, "event publish": 1 });
    await svc.close();
  });

  it("while legacy selections are being moved, a channel without a selection also reads its legacy key, in the same round trip", async () => {
    const svc = await steppedService(true);
    await svc.chat("u0", "#c0");
    const warm = await svc.chat("u0", "#c0");
    expect(warm.sequential).toBe(2);
    expect(warm.ops).toEqual({ "read PERSONAS": 1, "write LIMITS": 3, "write MEMORY": 2, "event publish": 1 });
    await svc.close();
  });
});
