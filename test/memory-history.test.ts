// History stored one key per exchange: one write per chat, older per-turn keys still read,
// summarized and reset, and token estimates of stored messages worked out once.
import { describe, expect, it, vi } from "vitest";

// Count the estimator's calls, still computing the real estimate.
vi.mock("../lib/providers/tokens", async (importOriginal) => {
  const real = await importOriginal<typeof import("../lib/providers/tokens")>();
  return { ...real, estimateTokens: vi.fn(real.estimateTokens) };
});

import { defaultConfig } from "../lib/config";
import type { Completion, Events, Providers } from "../lib/context";
import { MemoryKv } from "../lib/kv";
import { encodeName } from "../lib/keys";
import { silentLogger } from "../lib/log";
import { createMemory } from "../lib/memory";
import { BUILTIN_PERSONAS } from "../lib/personas";
import { estimateTokens } from "../lib/providers/tokens";
import { storedData } from "./helpers/stored-context";

const persona = BUILTIN_PERSONAS[0];
const enc = new TextEncoder();
const dec = new TextDecoder();
const T0 = Date.parse("2025-01-01T00:00:00Z");

function setup(memory: Record<string, number> = {}, kv = new MemoryKv("MEM")) {
  const config = defaultConfig({ memory: memory as never });
  const summaries: string[] = [];
  const emitted: Array<{ name: string; payload: Record<string, unknown> }> = [];
  const providers: Providers = {
    async complete(messages): Promise<Completion> {
      summaries.push(messages[1].content);
      return {
        content: "A summary.",
        tokens: { prompt: 1, completion: 1, total: 2 },
        tokens_reported: true,
        provider: "fake",
        model: "fake-1",
        finish_reason: "stop",
        latency_ms: 1,
      };
    },
    status: () => [],
    current: () => ({ name: "fake", model: "fake-1" }),
    estimateTokens: (t) => t.length,
  };
  const events: Events = {
    emit(name, payload) {
      emitted.push({ name, payload: payload as Record<string, unknown> });
      return String(emitted.length);
    },
    async flush() {},
  };
  const mem = createMemory({ kv, config, clock: { now: () => T0 }, events, providers, log: silentLogger });
  return { mem, kv, summaries, emitted };
}

/** Writes one exchange the way history was stored before: two keys, question -0 and answer -1. */
async function legacyExchange(kv: MemoryKv, channel: string, at: number, n: number, user: string, q: string, a: string) {
  const id = `${at.toString(36).padStart(9, "0")}-${n.toString(36).padStart(5, "0")}-oldtag`;
  const ch = encodeName(channel);
  await kv.create(`t.${ch}.${id}-0`, enc.encode(JSON.stringify({ role: "user", user, content: q, at })));
  await kv.create(`t.${ch}.${id}-1`, enc.encode(JSON.stringify({ role: "assistant", content: a, at })));
}

describe("history, one key per exchange", () => {
  it("writes an exchange as one key holding question and reply", async () => {
    const { mem, kv } = setup({ summarize_after: 1000 });
    const writes = () => kv.ops.create + kv.ops.put + kv.ops.update;
    const before = writes();
    await mem.record("#one", "alice", "how are you?", "fine, thanks");
    expect(writes() - before).toBe(1);
    const keys = await kv.keys(`t.${encodeName("#one")}.*`);
    expect(keys).toHaveLength(1);
    const value = JSON.parse(dec.decode((await kv.get(keys[0]))!.value));
    expect(value).toEqual({ user: "alice", message: "how are you?", reply: "fine, thanks", at: T0 });
    const ctx = await mem.context("#one", "bob", "and you?", persona);
    expect(ctx.slice(1).map((m) => [m.role, m.content])).toEqual([
      ["user", "alice: how are you?"],
      ["assistant", "fine, thanks"],
      ["user", "bob: and you?"],
    ]);
  });

  it("reads per-turn keys already in the bucket, in time order with new exchanges", async () => {
    const kv = new MemoryKv("MEM");
    await legacyExchange(kv, "#mix", T0 - 2000, 0, "old1", "q0", "a0");
    await legacyExchange(kv, "#mix", T0 - 1000, 1, "old2", "q1", "a1");
    const { mem } = setup({ summarize_after: 1000 }, kv);
    await mem.record("#mix", "new", "q2", "a2");
    const ctx = await mem.context("#mix", "z", "now", persona);
    expect(ctx.slice(1).map((m) => m.content)).toEqual(["old1: q0", "a0", "old2: q1", "a1", "new: q2", "a2", "z: now"]);
    // history_messages counts messages, whichever way they were stored.
    const few = setup({ summarize_after: 1000, history_messages: 3 }, kv).mem;
    expect((await few.context("#mix", "z", "now", persona)).slice(1).map((m) => m.content)).toEqual(["a1", "new: q2", "a2", "z: now"]);
  });

  it("summarizes a mix of old per-turn keys and exchanges, counting messages, and resets both", async () => {
    const kv = new MemoryKv("MEM");
    for (let i = 0; i < 3; i++) await legacyExchange(kv, "#sum", T0 - 10_000 + i, i, "olga", `old q${i}`, `old a${i}`);
    // 6 old messages + 4 new = 10: at the threshold, not past it.
    const { mem, summaries, emitted } = setup({ summarize_after: 10, history_messages: 4 }, kv);
    await mem.record("#sum", "nina", "new q0", "new a0");
    await mem.record("#sum", "nina", "new q1", "new a1");
    await mem.settled();
    expect(summaries).toHaveLength(0);
    await mem.record("#sum", "nina", "new q2", "new a2");
    await mem.settled();
    // 12 messages, keep min(4, 10/2) = 4: the 8 oldest are summarized, questions with their answers.
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toContain("olga: old q0");
    expect(summaries[0]).toContain("nina: new q0");
    expect(summaries[0]).not.toContain("new q1");
    expect(emitted.find((e) => e.name === "summarized")?.payload.message_count).toBe(8);
    expect(await kv.keys("t.>")).toHaveLength(2);
    const ctx = await mem.context("#sum", "z", "?", persona);
    expect(storedData(ctx)).toEqual({ index: 1, summaries: ["A summary."], facts: [] });
    expect(ctx.slice(2).map((m) => m.content)).toEqual([
      "nina: new q1",
      "new a1",
      "nina: new q2",
      "new a2",
      "z: ?",
    ]);

    await legacyExchange(kv, "#sum", T0 - 5, 9, "olga", "late", "old");
    await mem.reset("#sum");
    expect(await kv.keys("t.>")).toHaveLength(0);
    expect(await kv.keys("s.>")).toHaveLength(0);
  });

  it("keeps an old question with its answer when the cut falls between them", async () => {
    const kv = new MemoryKv("MEM");
    for (let i = 0; i < 4; i++) await legacyExchange(kv, "#cut", T0 - 10_000 + i, i, "olga", `q${i}`, `a${i}`);
    const { mem, emitted } = setup({ summarize_after: 6, history_messages: 3 }, kv);
    // 10 messages, keep min(history 3, 6/2) = 3: a cut after 7 messages would part q3 from a3.
    await mem.record("#cut", "nina", "trigger", "ok");
    await mem.settled();
    expect(emitted.find((e) => e.name === "summarized")?.payload.message_count).toBe(8);
    const ctx = await mem.context("#cut", "z", "?", persona);
    expect(ctx.slice(2).map((m) => m.content)).toEqual(["nina: trigger", "ok", "z: ?"]);
  });

  it("estimates a stored message's tokens once, not on every context", async () => {
    const { mem } = setup({ summarize_after: 1000, history_messages: 40 });
    for (let i = 0; i < 10; i++) await mem.record("#est", "alice", `question number ${i}`, `answer number ${i}`);
    const first = await mem.context("#est", "bob", "hello", persona);
    const spy = vi.mocked(estimateTokens);
    spy.mockClear();
    const again = await mem.context("#est", "bob", "hello", persona);
    expect(again).toEqual(first);
    // Only the persona prompt and the new message are estimated: 20 history messages are cached.
    expect(spy).toHaveBeenCalledTimes(2);
  });
});
