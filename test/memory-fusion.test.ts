// Recall by words and meaning, in memory: reciprocal rank fusion of BM25 and vector
// similarity, which vectors are compared, how embeddings are stored in a memory's value and
// read back with the channel, and what they add to the channel's byte count.
import { describe, expect, it } from "vitest";
import type { KvEntry } from "../lib/kv";
import { terms, type Doc, type Ranked } from "../lib/memory";
import { applyToChannel, emptyChannel, type ChannelState } from "../lib/memory/channel";
import { fuse, fusedSearch, RRF_K, similar } from "../lib/memory/fusion";
import { decodeEmbedding, encodeEmbedding, type MemoryVector } from "../lib/memory/embedding";
import { unitVector } from "../lib/providers";
import type { Memory } from "../lib/schemas";
import { conceptVector } from "./helpers/embeddings-server";
import { fixtureMemories, loadParaphraseFixture } from "./helpers/paraphrase";

const MODEL = "concepts-1";
const enc = new TextEncoder();
const t0 = Date.parse("2025-03-01T12:00:00Z");
let revision = 0;

const vectorOf = (text: string): MemoryVector => ({ model: MODEL, vector: unitVector(conceptVector(text))! });

function memory(id: string, content: string, over: Partial<Memory> = {}): Memory {
  const at = new Date(t0 + revision * 60_000).toISOString();
  return { id, channel: "#c", user_id: null, category: "fact", content, importance: 1, created_at: at, last_accessed: at, ...over };
}

/** Applies memory `id` as stored, with the embedding of its content unless given another (null: none). */
function put(st: ChannelState, m: Memory, embedding: unknown = encodeEmbedding(MODEL, vectorOf(m.content).vector)): void {
  const k = `m.c.${m.id}`;
  applyToChannel(st, k, { key: k, value: enc.encode(JSON.stringify({ ...m, embedding })), revision: ++revision } as KvEntry);
}

function channel(contents: Record<string, string>): ChannelState {
  const st = emptyChannel("c");
  for (const [id, content] of Object.entries(contents)) put(st, memory(id, content));
  return st;
}

const all = () => true;
const ids = (r: Ranked[]) => r.map((x) => x.doc.memory.id);
const ranked = (st: ChannelState, ...order: string[]): Ranked[] => order.map((id, i) => ({ doc: st.memories.get(id)!, score: 10 - i }));

const ALICE = {
  home: "Alice lives in Lisbon",
  job: "Alice works as a nurse at the children's hospital",
  pet: "Alice has a grey cat named Pixel",
  drink: "Alice drinks green tea every morning",
};

describe("reciprocal rank fusion", () => {
  const st = channel({ a: "one", b: "two", c: "three", d: "four" });

  it("puts a memory high in both rankings above one first in only one", () => {
    // c: 3rd and 1st; b: 2nd and 2nd; a: 1st in one; d: 3rd in one.
    expect(ids(fuse([ranked(st, "a", "b", "c"), ranked(st, "c", "b", "d")], 4))).toEqual(["c", "b", "a", "d"]);
  });

  it("scores 1 / (RRF_K + rank) per ranking, whatever the rankings' own scores", () => {
    const [top] = fuse([ranked(st, "a"), ranked(st, "a")], 1);
    expect(top.score).toBeCloseTo(2 / (RRF_K + 1), 12);
  });

  it("breaks equal fused scores by importance, and keeps to the limit", () => {
    const ties = emptyChannel("t");
    put(ties, memory("low", "low"));
    put(ties, memory("high", "high", { importance: 5 }));
    expect(ids(fuse([ranked(ties, "low"), ranked(ties, "high")], 2))).toEqual(["high", "low"]);
    expect(fuse([ranked(ties, "low"), ranked(ties, "high")], 1)).toHaveLength(1);
  });
});

describe("vector similarity", () => {
  it("ranks the channel's memories by cosine similarity to the query, leaving out those with none", () => {
    const st = channel(ALICE);
    put(st, memory("bob", "Bob plays chess online every night"));
    expect(ids(similar(st, vectorOf("what does alice do for a living?"), all, 10))).toEqual(["job", "home", "pet", "drink"]);
  });

  it("compares only vectors of the query's model and length, of memories the caller may see", () => {
    const st = channel(ALICE);
    put(st, memory("other", "Alice works nights as a nurse"), encodeEmbedding("another-model", vectorOf("Alice works nights as a nurse").vector));
    put(st, memory("short", "Alice nurse job"), encodeEmbedding(MODEL, new Float32Array([1, 0])));
    const found = ids(similar(st, vectorOf("alice job"), (d: Doc) => d.memory.id !== "home", 10));
    expect(found).toEqual(["job", "pet", "drink"]);
  });
});

describe("fused recall", () => {
  it("finds a paraphrase that words alone rank below other memories of the same person", () => {
    const st = emptyChannel("c");
    for (const m of fixtureMemories(loadParaphraseFixture())) put(st, m);
    const query = "how many children does bob have?";
    expect(ids(st.memories.search(terms(query), all, 5))[0]).not.toBe("bob-kids");
    expect(ids(fusedSearch(st, terms(query), vectorOf(query), all, 5))[0]).toBe("bob-kids");
  });

  it("ranks by words alone in a channel without vectors of the model", () => {
    const st = emptyChannel("c");
    for (const [id, content] of Object.entries(ALICE)) put(st, memory(id, content), null);
    const query = "what does alice do for a living?";
    expect(ids(fusedSearch(st, terms(query), vectorOf(query), all, 5))).toEqual(ids(st.memories.search(terms(query), all, 5)));
  });
});

describe("stored embeddings", () => {
  it("round-trip through their stored form", () => {
    const v = vectorOf("Bob loves old horror movies");
    const back = decodeEmbedding(JSON.parse(JSON.stringify(encodeEmbedding(MODEL, v.vector))))!;
    expect(back.model).toBe(MODEL);
    expect([...back.vector]).toEqual([...v.vector]);
  });

  it.each([[undefined], [null], ["x"], [{ model: MODEL }], [{ model: MODEL, vector: "" }], [{ model: MODEL, vector: "AAA" }], [{ model: 1, vector: "AAAAAA==" }], [{ model: MODEL, vector: Buffer.from(new Float32Array([Number.NaN]).buffer).toString("base64") }]])(
    "are absent for %o",
    (e) => {
      expect(decodeEmbedding(e)).toBeNull();
    },
  );

  it("are read with the channel but never into the memory recall returns, and an unreadable one leaves the memory without a vector", () => {
    const st = channel({ films: "Bob loves old horror movies" });
    expect(st.vectors.get("films")?.model).toBe(MODEL);
    expect(Object.keys(st.memories.get("films")!.memory)).not.toContain("embedding");
    put(st, memory("films", "Bob loves old horror movies"), { model: MODEL, vector: 42 });
    expect(st.memories.get("films")).toBeDefined();
    expect(st.vectors.has("films")).toBe(false);
  });

  it("count in the channel's bytes while held, and go with their memory", () => {
    const st = emptyChannel("c");
    put(st, memory("films", "Bob loves old horror movies"), null);
    const without = st.bytes;
    put(st, memory("films", "Bob loves old horror movies"));
    expect(st.bytes - without).toBeGreaterThan(st.vectors.get("films")!.vector.byteLength);
    applyToChannel(st, "m.c.films", null);
    expect(st.vectors.size).toBe(0);
    expect(st.bytes).toBe(0);
  });
});
