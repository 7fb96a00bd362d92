// Conversation memory over the in-memory bucket: history bounds, token budget, racing
// records, summarization, context order and reset.
import { describe, expect, it, vi } from "vitest";
import { defaultConfig } from "../lib/config";
import type { Completion, CompletionOptions, Events, Providers } from "../lib/context";
import { MemoryKv } from "../lib/kv";
import { silentLogger } from "../lib/log";
import { CLAIM_TTL_MS, createMemory, SUMMARY_PROMPT, type MemoryService } from "../lib/memory";
import { BUILTIN_PERSONAS } from "../lib/personas";
import { estimateMessagesTokens } from "../lib/providers/tokens";
import type { Message } from "../lib/schemas";
import { storedData } from "./helpers/stored-context";

const persona = BUILTIN_PERSONAS[0];

/** Providers that record every call and answer with a fixed summary (or fail). */
function recordingProviders(opts: { fail?: boolean; reply?: string } = {}) {
  const calls: Array<{ messages: Message[]; options: CompletionOptions }> = [];
  const providers: Providers = {
    async complete(messages, options = {}): Promise<Completion> {
      calls.push({ messages, options });
      if (opts.fail) throw new Error("provider down");
      const content = opts.reply ?? "They talked about the weather.";
      return {
        content,
        tokens: { prompt: 10, completion: 5, total: 15 },
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
  return { providers, calls };
}

function recordingEvents() {
  const emitted: Array<{ name: string; payload: Record<string, unknown>; id?: string }> = [];
  const events: Events = {
    emit(name, payload, o) {
      emitted.push({ name, payload: payload as Record<string, unknown>, id: o?.id });
      return o?.id ?? String(emitted.length);
    },
    async flush() {},
  };
  return { events, emitted };
}

function setup(memory: Partial<ReturnType<typeof defaultConfig>["memory"]> = {}, kv = new MemoryKv("MEM"), fail = false) {
  const config = defaultConfig({ memory: memory as never });
  let t = Date.parse("2025-01-01T00:00:00Z");
  const clock = { now: () => t };
  const { providers, calls } = recordingProviders({ fail });
  const { events, emitted } = recordingEvents();
  const mem = createMemory({ kv, config, clock, events, providers, log: silentLogger });
  return { mem, kv, calls, emitted, advance: (ms: number) => (t += ms), clock };
}

async function chat(mem: MemoryService, channel: string, n: number, user = "alice") {
  for (let i = 0; i < n; i++) await mem.record(channel, user, `question ${i}`, `answer ${i}`);
}

describe("conversation history", () => {
  it("keeps user names on user turns and bounds context by history_messages", async () => {
    const { mem } = setup({ history_messages: 6, summarize_after: 1000 });
    await chat(mem, "#rosey", 10);
    const ctx = await mem.context("#rosey", "bob", "hello there", persona);
    expect(ctx[0]).toEqual({ role: "system", content: persona.system_prompt });
    expect(ctx.slice(1)).toEqual([
      { role: "user", content: "alice: question 7" },
      { role: "assistant", content: "answer 7" },
      { role: "user", content: "alice: question 8" },
      { role: "assistant", content: "answer 8" },
      { role: "user", content: "alice: question 9" },
      { role: "assistant", content: "answer 9" },
      { role: "user", content: "bob: hello there" },
    ]);
  });

  it("keeps the newest turns that fit the token budget", async () => {
    const { mem } = setup({ history_messages: 50, context_tokens: 300, summarize_after: 1000 });
    const long = "word ".repeat(40).trim(); // ~40 tokens
    for (let i = 0; i < 10; i++) await mem.record("#c", "alice", `${i} ${long}`, `reply ${i}`);
    const ctx = await mem.context("#c", "alice", "and now?", persona);
    expect(estimateMessagesTokens(ctx)).toBeLessThanOrEqual(300);
    const history = ctx.slice(1, -1);
    expect(history.length).toBeGreaterThan(0);
    expect(history.length).toBeLessThan(20);
    // Contiguous and newest: ends with the last exchange.
    expect(history.at(-1)).toEqual({ role: "assistant", content: "reply 9" });
    expect(ctx.at(-1)).toEqual({ role: "user", content: "alice: and now?" });
  });

  it("keeps channels apart, whatever their names", async () => {
    const { mem } = setup({ summarize_after: 1000 });
    await mem.record("a.b", "x", "in a.b", "ok");
    await mem.record("a.*", "y", "in a.*", "ok");
    await mem.record(">", "z", "in >", "ok");
    const ctx = await mem.context("a.b", "x", "next", persona);
    expect(ctx.map((m) => m.content)).toEqual([persona.system_prompt, "x: in a.b", "ok", "x: next"]);
  });

  it("keeps every turn when two instances record into one channel at once", async () => {
    const kv = new MemoryKv("MEM");
    const a = setup({ summarize_after: 1000, history_messages: 500, context_tokens: 100_000 }, kv);
    const b = setup({ summarize_after: 1000, history_messages: 500, context_tokens: 100_000 }, kv);
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? a.mem : b.mem).record("#race", `u${i}`, `m${i}`, `r${i}`)),
    );
    expect((await kv.keys("t.>")).length).toBe(40); // one key per exchange
    const ctx = await a.mem.context("#race", "x", "?", persona);
    const contents = new Set(ctx.map((m) => m.content));
    for (let i = 0; i < 40; i++) {
      expect(contents.has(`u${i}: m${i}`)).toBe(true);
      expect(contents.has(`r${i}`)).toBe(true);
    }
    // Each reply directly follows its question.
    for (let i = 1; i < ctx.length - 1; i++) {
      const m = /^u(\d+): m\d+$/.exec(ctx[i].content);
      if (m) expect(ctx[i + 1].content).toBe(`r${m[1]}`);
    }
  });
});

describe("summarization", () => {
  it("summarizes the oldest stretch once, trims it and publishes one event", async () => {
    const kv = new MemoryKv("MEM");
    const a = setup({ summarize_after: 10, history_messages: 4 }, kv);
    const b = setup({ summarize_after: 10, history_messages: 4 }, kv);
    await chat(a.mem, "#s", 5); // 10 turns: not past the threshold
    await a.mem.settled();
    expect(a.calls).toHaveLength(0);
    // Both instances cross the threshold at the same moment.
    await Promise.all([a.mem.record("#s", "alice", "q5", "a5"), b.mem.record("#s", "bob", "q6", "a6")]);
    await Promise.all([a.mem.settled(), b.mem.settled()]);

    expect(a.calls.length + b.calls.length).toBe(1);
    const call = [...a.calls, ...b.calls][0];
    expect(call.options.temperature).toBe(0.3);
    expect(call.messages[0]).toEqual({ role: "system", content: SUMMARY_PROMPT });
    expect(SUMMARY_PROMPT).toMatch(/under 200 words/);
    expect(call.messages[1].content).toContain("alice: question 0");

    const events = [...a.emitted, ...b.emitted].filter((e) => e.name === "summarized");
    expect(events).toHaveLength(1);
    expect(events[0].payload).toEqual({ channel: "#s", message_count: 10, summary_length: "They talked about the weather.".length });

    expect(await kv.keys("s.>")).toHaveLength(1);
    expect(await kv.keys("t.>")).toHaveLength(2); // the 4 newest messages: 2 exchanges
    for (const mem of [a.mem, b.mem]) {
      const ctx = await mem.context("#s", "alice", "next", persona);
      expect(storedData(ctx)).toEqual({ index: 1, summaries: ["They talked about the weather."], facts: [] });
      expect(ctx.slice(2, -1)).toHaveLength(4);
    }
  });

  it("takes over a stretch whose claimant stopped before finishing", async () => {
    const kv = new MemoryKv("MEM");
    const config = defaultConfig({ memory: { summarize_after: 6, history_messages: 2 } as never });
    let t = Date.parse("2025-01-01T00:00:00Z");
    const clock = { now: () => t };
    const stuck: Providers = { ...recordingProviders().providers, complete: () => new Promise(() => {}) };
    const a = createMemory({ kv, config, clock, events: recordingEvents().events, providers: stuck, log: silentLogger });
    const b = recordingProviders();
    const bEvents = recordingEvents();
    const bMem = createMemory({ kv, config, clock, events: bEvents.events, providers: b.providers, log: silentLogger });
    await chat(a, "#t", 4); // A claims the stretch (in the background) and never finishes
    await vi.waitFor(async () => expect(await kv.keys("c.>")).toHaveLength(1));
    t += 1000;
    await bMem.record("#t", "bob", "anyone?", "here");
    await bMem.settled();
    expect(b.calls).toHaveLength(0); // the claim is fresh: B leaves it alone
    t += CLAIM_TTL_MS + 1;
    await bMem.record("#t", "bob", "still there?", "yes");
    await bMem.settled();
    expect(b.calls).toHaveLength(1);
    expect(bEvents.emitted.filter((e) => e.name === "summarized")).toHaveLength(1);
    expect(await kv.keys("s.>")).toHaveLength(1);
  });

  it("stores a plain summary when the provider fails", async () => {
    const { mem, emitted, kv } = setup({ summarize_after: 6, history_messages: 2 }, new MemoryKv("MEM"), true);
    await chat(mem, "#f", 4);
    await mem.settled();
    const ctx = await mem.context("#f", "alice", "hi", persona);
    const [summary] = storedData(ctx)!.summaries;
    expect(summary).toMatch(/^Earlier conversation of 6 messages between alice/);
    expect(summary).toContain("question 0");
    expect(emitted.filter((e) => e.name === "summarized")).toHaveLength(1);
    expect(await kv.keys("t.>")).toHaveLength(1);
  });

  it("writes summaries through the summarizer hook when given, and a plain one when it throws", async () => {
    const config = defaultConfig({ memory: { summarize_after: 6, history_messages: 2 } as never });
    const clock = { now: () => Date.parse("2025-01-01T00:00:00Z") };
    const { providers, calls } = recordingProviders();
    const asked: Array<{ channel: string; messages: Message[] }> = [];
    let fail = false;
    const summarizer = async (req: { channel: string; messages: Message[] }) => {
      asked.push(req);
      if (fail) throw new Error("over quota");
      return "Summary from the hook.";
    };
    const mem = createMemory({ kv: new MemoryKv("MEM"), config, clock, events: recordingEvents().events, providers, log: silentLogger, summarizer });
    await chat(mem, "#hook", 4);
    await mem.settled();
    expect(calls).toHaveLength(0); // the providers are not called directly
    expect(asked.map((a) => [a.channel, a.messages[0].content])).toEqual([["#hook", SUMMARY_PROMPT]]);
    expect(asked[0].messages[1].content).toContain("alice: question 0");
    expect(storedData(await mem.context("#hook", "alice", "hi", persona))?.summaries).toEqual(["Summary from the hook."]);
    fail = true;
    await chat(mem, "#hook2", 4);
    await mem.settled();
    expect(storedData(await mem.context("#hook2", "alice", "hi", persona))?.summaries[0]).toMatch(/^Earlier conversation of 6 messages/);
  });

  it("shows only the last summaries_in_context summaries, oldest first", async () => {
    const { mem } = setup({ summarize_after: 4, history_messages: 2, summaries_in_context: 2 });
    for (let i = 0; i < 12; i++) {
      await mem.record("#m", "alice", `q${i}`, `a${i}`);
      await mem.settled();
    }
    const ctx = await mem.context("#m", "alice", "hi", persona);
    const stored = storedData(ctx)!;
    expect(stored.index).toBe(1);
    expect(stored.summaries).toHaveLength(2);
  });
});

describe("context", () => {
  it("orders persona prompt, stored summaries and facts, history, then the new message", async () => {
    const { mem } = setup({ summarize_after: 6, history_messages: 2 });
    await mem.add({ channel: "#o", content: "The bot's birthday is in June", category: "fact", importance: 3 });
    await mem.add({ channel: "#o", content: "Bob prefers tabs over spaces", category: "preference", importance: 1, user_id: "bob" });
    await chat(mem, "#o", 4);
    await mem.settled();
    await mem.record("#o", "alice", "last question", "last answer");
    const custom = { ...persona, system_prompt: "You are a pirate." };
    const ctx = await mem.context("#o", "alice", "when is the birthday?", custom);
    // The persona's prompt is the one system message; stored text follows as quoted data.
    expect(ctx.map((m) => m.role)).toEqual(["system", "user", "user", "assistant", "user"]);
    expect(ctx[0].content).toBe("You are a pirate.");
    const stored = storedData(ctx)!;
    expect(stored.index).toBe(1);
    expect(stored.summaries).toHaveLength(1);
    expect(stored.facts).toEqual([{ about: null, text: "The bot's birthday is in June" }]);
    expect(ctx.slice(2).map((m) => m.content)).toEqual(["alice: last question", "last answer", "alice: when is the birthday?"]);
  });

  it("includes a user's own memories only for that user", async () => {
    const { mem } = setup();
    await mem.add({ channel: "#p", content: "Bob prefers tabs over spaces", category: "preference", importance: 1, user_id: "bob" });
    const forAlice = await mem.context("#p", "alice", "tabs or spaces?", persona);
    const forBob = await mem.context("#p", "bob", "tabs or spaces?", persona);
    expect(forAlice.some((m) => m.content.includes("tabs over spaces"))).toBe(false);
    expect(storedData(forBob)).toEqual({ index: 1, summaries: [], facts: [{ about: "bob", text: "Bob prefers tabs over spaces" }] });
  });
});

describe("reset", () => {
  it("drops history and summaries but keeps memories", async () => {
    const { mem, kv } = setup({ summarize_after: 6, history_messages: 2 });
    await mem.add({ channel: "#r", content: "Movie night is on Friday", category: "fact", importance: 2 });
    await chat(mem, "#r", 5);
    await mem.settled();
    expect((await kv.keys("s.>")).length).toBeGreaterThan(0);
    await mem.record("#other", "x", "stay", "here");
    await mem.reset("#r");
    expect(await kv.keys("t.>")).toHaveLength(1); // #other's exchange
    expect(await kv.keys("s.>")).toHaveLength(0);
    const ctx = await mem.context("#r", "alice", "when is movie night?", persona);
    expect(ctx.map((m) => m.content)[0]).toBe(persona.system_prompt);
    expect(storedData(ctx)).toEqual({ index: 1, summaries: [], facts: [{ about: null, text: "Movie night is on Friday" }] });
    expect(ctx.slice(2).map((m) => m.content)).toEqual(["alice: when is movie night?"]);
  });
});
