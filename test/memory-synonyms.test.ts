// Recall through related words: WordNet synonyms and narrower words find a memory asked about
// in other words, an exact match still ranks first, and expansion per query term is bounded.
import { describe, expect, it } from "vitest";
import { defaultConfig } from "../lib/config";
import type { Events, Providers } from "../lib/context";
import { MemoryKv } from "../lib/kv";
import { silentLogger } from "../lib/log";
import { createMemory, exactTerms, MemoryIndex, stem, terms, wordnetTerms, type RelatedTerms } from "../lib/memory";
import { MAX_RELATED } from "../lib/memory/bm25";
import { fixtureMemories, indexRanker, loadParaphraseFixture, scoreRecall } from "./helpers/paraphrase";

/** An index of `contents`, added in order one minute apart (later ones win ties). */
function indexOf(contents: string[], related?: RelatedTerms): MemoryIndex {
  const index = new MemoryIndex(related);
  const t0 = Date.parse("2025-03-01T12:00:00Z");
  contents.forEach((content, i) => {
    const at = new Date(t0 + i * 60_000).toISOString();
    index.upsert({ id: `m${i}`, channel: "#c", user_id: null, category: "fact", content, importance: 1, created_at: at, last_accessed: at }, 1);
  });
  return index;
}

const ranked = (index: MemoryIndex, query: string, limit = 5) =>
  index.search(terms(query), () => true, limit).map((r) => r.doc.memory.content);

describe("related terms", () => {
  it("are looked up by stems that fold a word's -ies/-ied forms onto its base", () => {
    expect(stem("movies")).toBe(stem("movie"));
    expect(new Set(["study", "studies", "studied", "studying"].map(stem)).size).toBe(1);
    expect(stem("days")).toBe(stem("day"));
  });

  it("gives the synonyms and narrower words of a stem, and nothing for an unknown word", () => {
    expect(wordnetTerms(stem("films"))).toContain(stem("movies"));
    expect(wordnetTerms(stem("dogs"))).toContain(stem("beagle"));
    expect(wordnetTerms(stem("beverages"))).toContain(stem("tea"));
    expect(wordnetTerms(stem("films"))).not.toContain(stem("films"));
    expect(wordnetTerms("zqxv")).toEqual([]);
  });
});

describe("ranking with related terms", () => {
  const BOB = ["Bob loves old horror movies", "Bob works at a bank", "Bob has two daughters", "Bob plays chess online"];

  it("finds a memory asked about in other words", () => {
    const query = "what kind of films does bob enjoy?";
    expect(ranked(indexOf(BOB), query)[0]).toBe("Bob loves old horror movies");
    // By exact stems only the name matches, and the longest of Bob's memories comes last.
    expect(ranked(indexOf(BOB, exactTerms), query)[3]).toBe("Bob loves old horror movies");
  });

  it("finds a specific memory through a general word", () => {
    const index = indexOf(["Carol owns a beagle called Biscuit", "Carol reads detective novels", "Carol hates coffee"]);
    expect(ranked(index, "does carol have a dog?")[0]).toBe("Carol owns a beagle called Biscuit");
    expect(ranked(index, "what fiction does carol read?")[0]).toBe("Carol reads detective novels");
  });

  it("ranks an exact match above a match through a related word", () => {
    // The paraphrases are added last, so recency alone would put them first.
    const index = indexOf(["Dave watches films on Sundays", "Dave drinks coffee at work", "Dave watches movies on Sundays", "Dave drinks espresso at work"]);
    expect(ranked(index, "films")).toEqual(["Dave watches films on Sundays", "Dave watches movies on Sundays"]);
    expect(ranked(index, "coffee")).toEqual(["Dave drinks coffee at work", "Dave drinks espresso at work"]);
  });

  it("matches at most MAX_RELATED related terms of one query term", () => {
    const words = Array.from({ length: 3 * MAX_RELATED }, (_, i) => `word${i}`);
    const related: RelatedTerms = (t) => (t === "thing" ? words : []);
    const got = ranked(indexOf(words, related), "thing", words.length);
    expect(got).toHaveLength(MAX_RELATED);
    expect(new Set(got)).toEqual(new Set(words.slice(0, MAX_RELATED)));
  });

  it("still returns nothing for a query no memory relates to", () => {
    expect(ranked(indexOf(BOB), "quantum chromodynamics")).toEqual([]);
  });
});

describe("the paraphrase fixture", () => {
  const fixture = loadParaphraseFixture();
  const score = (related: RelatedTerms) => {
    const index = new MemoryIndex(related);
    for (const m of fixtureMemories(fixture)) index.upsert(m, 1);
    return scoreRecall(fixture, indexRanker(index));
  };

  it("is answered first and in the top five strictly more often with related terms than with exact stems", () => {
    const exact = score(exactTerms);
    const related = score(wordnetTerms);
    expect(related.at1).toBeGreaterThan(exact.at1);
    expect(related.at5).toBeGreaterThan(exact.at5);
  });

  it("is answered through the service's recall", async () => {
    let t = Date.parse("2025-03-01T12:00:00Z");
    const mem = createMemory({
      kv: new MemoryKv("MEM"),
      config: defaultConfig(),
      clock: { now: () => (t += 1000) },
      events: { emit: () => "x", flush: async () => {} } as Events,
      providers: {} as Providers,
      log: silentLogger,
    });
    for (const m of fixture.memories) await mem.add({ channel: fixture.channel, content: m.content, category: "fact", importance: 1 });
    const first = async (query: string) => (await mem.recall({ channel: fixture.channel, query, limit: 5 }))[0]?.content;
    expect(await first("which soccer team does bob cheer for?")).toBe("Bob supports Liverpool football club");
    expect(await first("what dog did frank take in?")).toBe("Frank adopted a rescue greyhound");
  });
});
