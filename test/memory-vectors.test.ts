// The memory's side of embeddings over an in-memory bucket and a real local /v1/embeddings
// server: the query cache, the backfill (another model's vectors, a server that failed and
// came back, a text the server refuses), and what is stored.
import { describe, expect, it } from "vitest";
import { defaultConfig } from "../lib/config";
import type { Events, Providers } from "../lib/context";
import { MemoryKv } from "../lib/kv";
import { silentLogger } from "../lib/log";
import { createMemory, type MemoryService } from "../lib/memory";
import { decodeEmbedding } from "../lib/memory/embedding";
import { BACKFILL_BATCH, BACKFILL_EVERY_MS } from "../lib/memory/vectors";
import { createEmbedder } from "../lib/providers";
import { useEmbeddingsServer } from "./helpers/embeddings-server";

const CHANNEL = "#c";
const events: Events = { emit: () => "", flush: async () => {} };
const server = useEmbeddingsServer();

/** A clock the test moves, starting now. */
const manualClock = () => {
  const c = { t: Date.now(), now: () => c.t };
  return c;
};

/** A memory service over `kv`, with embeddings of `model` (none: off). */
function memory(kv: MemoryKv, clock: { now(): number }, model?: string): MemoryService {
  const config = defaultConfig({ log: { level: "silent" }, ...(model ? { embeddings: { model, base_url: server.url } } : {}) });
  const embedder = createEmbedder(config, { log: silentLogger, clock });
  return createMemory({ kv, config, clock, events, providers: {} as Providers, log: silentLogger, embedder });
}

const add = (m: MemoryService, content: string) => m.add({ channel: CHANNEL, content, category: "fact", importance: 1 });
const recall = (m: MemoryService, query: string) => m.recall({ channel: CHANNEL, query, limit: 5 });

/** The model of each stored memory's embedding (null: none), by content. */
async function models(kv: MemoryKv): Promise<Record<string, string | null>> {
  const out: Record<string, string | null> = {};
  for (const k of await kv.keys("m.>")) {
    const v = JSON.parse(new TextDecoder().decode((await kv.get(k))!.value));
    out[v.content] = decodeEmbedding(v.embedding)?.model ?? null;
  }
  return out;
}

describe("memory with embeddings", () => {
  it("stores a new memory with its vector, and embeds a repeated question once", async () => {
    const kv = new MemoryKv();
    const m = memory(kv, manualClock(), "m1");
    const stored = await add(m, "Bob loves old horror movies");
    expect(stored).not.toHaveProperty("embedding");
    await add(m, "Bob plays chess online every night");
    expect(await models(kv)).toEqual({ "Bob loves old horror movies": "m1", "Bob plays chess online every night": "m1" });
    for (let i = 0; i < 3; i++) expect((await recall(m, "what films does bob enjoy?"))[0].content).toBe("Bob loves old horror movies");
    expect(server.inputs().filter((t) => t === "what films does bob enjoy?")).toHaveLength(1);
    await m.settled();
  });

  it("embeds again, in the background, memories whose vectors are of another model", async () => {
    const kv = new MemoryKv();
    const clock = manualClock();
    const first = memory(kv, clock, "m1");
    for (const c of ["Alice lives in Lisbon", "Alice has a grey cat", "Alice drinks green tea"]) await add(first, c);
    const second = memory(kv, clock, "m2");
    await recall(second, "where does alice live?");
    await second.settled();
    expect(Object.values(await models(kv))).toEqual(["m2", "m2", "m2"]);
  });

  it("embeds a few memories per use and at most one request a second", async () => {
    const kv = new MemoryKv();
    const clock = manualClock();
    const off = memory(kv, clock);
    for (let i = 0; i < BACKFILL_BATCH + 2; i++) await add(off, `fact number ${i} about zebras`);
    const on = memory(kv, clock, "m1");
    await recall(on, "zebras");
    await on.settled();
    await recall(on, "zebras"); // too soon after the last request: nothing more
    await on.settled();
    expect(Object.values(await models(kv)).filter((v) => v === "m1")).toHaveLength(BACKFILL_BATCH);
    clock.t += BACKFILL_EVERY_MS;
    await recall(on, "zebras");
    await on.settled();
    expect(Object.values(await models(kv)).every((v) => v === "m1")).toBe(true);
    // The first batch, the question (once there were vectors to compare it with), the rest.
    expect(server.requests.map((r) => r.body.input.length)).toEqual([BACKFILL_BATCH, 1, 2]);
  });

  it("stores a memory without a vector while the server fails, and embeds it once the server is back", async () => {
    const kv = new MemoryKv();
    const clock = manualClock();
    const m = memory(kv, clock, "m1");
    server.setDefault({ kind: "error", status: 503 });
    await add(m, "Carol hates coffee");
    expect(await models(kv)).toEqual({ "Carol hates coffee": null });
    server.setDefault({ kind: "ok" });
    clock.t += 5_000; // still cooling down: no backfill, no request
    await recall(m, "carol coffee");
    await m.settled();
    expect(server.requests).toHaveLength(1);
    clock.t += defaultConfig().providers.cooldown_ms;
    await recall(m, "carol coffee");
    await m.settled();
    expect(await models(kv)).toEqual({ "Carol hates coffee": "m1" });
  });

  it("recalls a memory the server refuses by its words, and does not offer it again", async () => {
    const kv = new MemoryKv();
    const clock = manualClock();
    await add(memory(kv, clock), "Dave keeps two goldfish");
    const m = memory(kv, clock, "m1");
    server.script({ kind: "error", status: 400, message: "input rejected" });
    expect((await recall(m, "goldfish"))[0].content).toBe("Dave keeps two goldfish");
    await m.settled();
    clock.t += BACKFILL_EVERY_MS;
    expect((await recall(m, "goldfish"))[0].content).toBe("Dave keeps two goldfish");
    await m.settled();
    expect(server.requests).toHaveLength(1);
    expect(await models(kv)).toEqual({ "Dave keeps two goldfish": null });
  });
});
