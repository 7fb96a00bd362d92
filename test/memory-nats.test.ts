// Memory and personas of two instances (two connections) sharing the buckets of a real
// nats-server: what one writes the other sees on its next read, racing chats keep every
// turn, and a stretch of history is summarized once.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultConfig } from "../lib/config";
import type { Completion, Events, Providers } from "../lib/context";
import { encodeName } from "../lib/keys";
import type { Kv } from "../lib/kv";
import { silentLogger } from "../lib/log";
import { createMemory, type MemoryService } from "../lib/memory";
import { BUILTIN_PERSONAS, createPersonas, type PersonasService } from "../lib/personas";
import { natsKv } from "../runtime/kv";
import { streamReads } from "../runtime/kv-reads";
import { BUCKETS, provisionBuckets } from "../runtime/provision";
import { startNatsServer, type NatsServer } from "../runtime/nats-server";
import { storedData } from "./helpers/stored-context";

const persona = BUILTIN_PERSONAS[0];
let server: NatsServer;
let storeDir: string;
const conns: NatsConnection[] = [];
const services: MemoryService[] = [];
const personasList: PersonasService[] = [];

async function buckets(): Promise<{ memory: Kv; personas: Kv }> {
  const nc = await connect({ servers: server.url });
  conns.push(nc);
  // The buckets as the runtime provisions them: history keys carry a TTL.
  const b = await provisionBuckets(nc.jetstream(), defaultConfig());
  const jsm = await nc.jetstreamManager();
  return {
    memory: { ...natsKv(b.memory, BUCKETS.memory), ...streamReads(nc, jsm, BUCKETS.memory, false) },
    personas: { ...natsKv(b.personas, BUCKETS.personas), ...streamReads(nc, jsm, BUCKETS.personas, false) },
  };
}

function counting() {
  let calls = 0;
  const emitted: Array<{ name: string; payload: unknown }> = [];
  const providers: Providers = {
    async complete(): Promise<Completion> {
      calls++;
      await new Promise((r) => setTimeout(r, 20)); // a provider takes a while: let the race happen
      return {
        content: "The group planned a picnic.",
        tokens: { prompt: 1, completion: 1, total: 2 },
        tokens_reported: true,
        provider: "fake",
        model: "fake-1",
        finish_reason: "stop",
        latency_ms: 20,
      };
    },
    status: () => [],
    current: () => ({ name: "fake", model: "fake-1" }),
    estimateTokens: (t) => t.length,
  };
  const events: Events = {
    emit(name, payload) {
      emitted.push({ name, payload });
      return "x";
    },
    flush: async () => {},
  };
  return { providers, events, emitted, calls: () => calls };
}

async function instance(memory: Record<string, number> = {}) {
  const b = await buckets();
  const c = counting();
  const config = defaultConfig({ memory: memory as never });
  const mem = createMemory({ kv: b.memory, config, clock: { now: () => Date.now() }, ...c, log: silentLogger });
  services.push(mem);
  const personas = createPersonas({ kv: b.personas, selections: mem.selections, config, log: silentLogger });
  personasList.push(personas);
  return { mem, personas, kv: b.memory, ...c };
}

beforeAll(async () => {
  storeDir = mkdtempSync(join(tmpdir(), "rosey-llm-memory-"));
  server = await startNatsServer({ storeDir });
});

afterAll(async () => {
  for (const s of services) s.close();
  for (const p of personasList) p.close();
  await Promise.all(services.map((s) => s.settled()));
  await Promise.all(conns.map((c) => c.drain().catch(() => {})));
  await server?.stop();
  rmSync(storeDir, { recursive: true, force: true });
});

describe("two instances on one nats-server", () => {
  it("sees a persona defined and selected on the other instance", async () => {
    const [a, b] = await Promise.all([instance(), instance()]);
    expect((await b.personas.forChannel("#quiz")).name).toBe("default");
    await a.personas.define({ name: "quizmaster", description: "Runs quizzes", system_prompt: "Ask one question at a time." });
    await a.personas.select("#quiz", "quizmaster");
    expect(await b.personas.forChannel("#quiz")).toMatchObject({ name: "quizmaster", system_prompt: "Ask one question at a time." });
    expect((await b.personas.list()).map((p) => p.name)).toContain("quizmaster");
    await a.personas.select("#quiz", "concise");
    expect((await b.personas.forChannel("#quiz")).name).toBe("concise");
    await a.personas.define({ name: "quizmaster2", description: "", system_prompt: "Two questions at a time." });
    expect((await b.personas.select("#quiz2", "quizmaster2")).name).toBe("quizmaster2");
    expect((await a.personas.forChannel("#quiz2")).name).toBe("quizmaster2");
  });

  it("recalls on one instance a memory added on the other", async () => {
    const [a, b] = await Promise.all([instance(), instance()]);
    expect(await b.mem.recall({ channel: "#shared", query: "band", limit: 3 })).toEqual([]);
    const m = await a.mem.add({ channel: "#shared", content: "Rosa's favourite band is Queen", category: "fact", importance: 2 });
    const got = await b.mem.recall({ channel: "#shared", query: "which band does rosa like", limit: 3 });
    expect(got.map((x) => x.id)).toEqual([m.id]);
    const n = await a.mem.add({ channel: "#shared", content: "Sam plays the banjo", category: "fact", importance: 1 });
    expect((await b.mem.recall({ channel: "#shared", query: "banjo", limit: 1 }))[0]?.id).toBe(n.id);
    // Forgetting on B removes it from A.
    expect(await b.mem.forget({ channel: "#shared", id: m.id })).toBe(1);
    expect(await a.mem.recall({ channel: "#shared", query: "queen band", limit: 3 })).toEqual([]);
  });

  it("holds the per-channel memory cap exactly when adds race on three instances", async () => {
    const cap = { max_memories_per_channel: 5 };
    const [a, b, c] = await Promise.all([instance(cap), instance(cap), instance(cap)]);
    const ch = encodeName("#capped");
    // Five essential facts among 25 lesser ones, added all at once across the instances.
    const facts = Array.from({ length: 30 }, (_, i) => ({ content: `fact number ${i} about topic${i}`, importance: i % 6 === 0 ? 5 : 1 + (i % 4) }));
    await Promise.all(facts.map((f, i) => [a, b, c][i % 3].mem.add({ channel: "#capped", category: "fact", ...f })));
    await Promise.all([a, b, c].map((x) => x.mem.settled()));

    expect(await a.kv.keys(`m.${ch}.*`)).toHaveLength(5);
    const essential = facts.filter((f) => f.importance === 5).map((f) => f.content).sort();
    for (const x of [a, b, c]) {
      const kept = await x.mem.recall({ channel: "#capped", query: "fact topic", limit: 50 });
      expect(kept.map((m) => m.content).sort()).toEqual(essential);
    }
  });

  it("keeps every turn of chats racing on both instances", async () => {
    const [a, b] = await Promise.all([
      instance({ summarize_after: 1000, history_messages: 1000, context_tokens: 100_000 }),
      instance({ summarize_after: 1000, history_messages: 1000, context_tokens: 100_000 }),
    ]);
    await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 ? a : b).mem.record("#busy", `user${i}`, `msg ${i}`, `reply ${i}`)),
    );
    expect((await a.kv.keys(`t.${encodeName("#busy")}.*`)).length).toBe(60); // one key per exchange
    for (const x of [a, b]) {
      const ctx = await x.mem.context("#busy", "z", "?", persona);
      expect(ctx.length).toBe(1 + 120 + 1);
      for (let i = 0; i < 60; i++) expect(ctx.some((m) => m.content === `user${i}: msg ${i}`)).toBe(true);
    }
  });

  it("summarizes a stretch once when both instances cross the threshold", async () => {
    const cfg = { summarize_after: 10, history_messages: 4 };
    const [a, b] = await Promise.all([instance(cfg), instance(cfg)]);
    for (let i = 0; i < 5; i++) await a.mem.record("#picnic", "tess", `plan ${i}`, `ok ${i}`);
    await Promise.all([a.mem.context("#picnic", "x", "?", persona), b.mem.context("#picnic", "x", "?", persona)]);
    await Promise.all([a.mem.record("#picnic", "tess", "more", "sure"), b.mem.record("#picnic", "uma", "and", "yes")]);
    await Promise.all([a.mem.settled(), b.mem.settled()]);

    expect(a.calls() + b.calls()).toBe(1);
    const events = [...a.emitted, ...b.emitted].filter((e) => e.name === "summarized");
    expect(events).toHaveLength(1);
    const { message_count } = events[0].payload as { message_count: number };
    const ch = encodeName("#picnic");
    expect((await a.kv.keys(`s.${ch}.*`)).length).toBe(1);
    expect((await a.kv.keys(`t.${ch}.*`)).length).toBe((14 - message_count) / 2); // two messages per exchange

    // A fresh instance (a restart) carries on with the summary and the remaining history.
    const c = await instance(cfg);
    const ctx = await c.mem.context("#picnic", "tess", "where do we meet?", persona);
    expect(storedData(ctx)).toEqual({ index: 1, summaries: ["The group planned a picnic."], facts: [] });
    expect(ctx.at(-1)!.content).toBe("tess: where do we meet?");
    expect(ctx.length).toBe(2 + Math.min(4, 14 - message_count) + 1);
  });
});
