// The paraphrase recall fixture (test/fixtures/paraphrase-recall.json) and how a ranking
// scores on it. Used by the recall tests and by bench/recall.bench.ts.
//
// Loading checks the fixture's promise: no question shares an index term with the memory it
// should find, except the name of the person it is about.
import { readFileSync } from "node:fs";
import { MemoryIndex, terms } from "../../lib/memory";
import type { Memory } from "../../lib/schemas";

export interface ParaphraseFixture {
  channel: string;
  names: string[];
  memories: { id: string; content: string }[];
  questions: { query: string; expect: string }[];
}

/** Ids of the best memories for a query, best first. */
export type Ranker = (query: string, limit: number) => string[];

export interface RecallScore {
  questions: number;
  /** Questions whose memory came first. */
  at1: number;
  /** Questions whose memory was among the first five. */
  at5: number;
  /** For each question, the rank (1-based) of its memory, or 0 when not in the first five. */
  ranks: number[];
}

export function loadParaphraseFixture(): ParaphraseFixture {
  const url = new URL("../fixtures/paraphrase-recall.json", import.meta.url);
  const f = JSON.parse(readFileSync(url, "utf8")) as ParaphraseFixture;
  const names = new Set(f.names.flatMap(terms));
  const byId = new Map(f.memories.map((m) => [m.id, m.content]));
  for (const q of f.questions) {
    const content = byId.get(q.expect);
    if (content === undefined) throw new Error(`fixture: "${q.query}" expects unknown memory ${q.expect}`);
    const own = new Set(terms(content));
    const shared = terms(q.query).filter((t) => own.has(t) && !names.has(t));
    if (shared.length > 0) throw new Error(`fixture: "${q.query}" shares ${shared.join(", ")} with ${q.expect}`);
  }
  return f;
}

/** The fixture's memories as the service stores them: channel-wide, equal importance, one minute apart. */
export function fixtureMemories(f: ParaphraseFixture): Memory[] {
  const t0 = Date.parse("2025-03-01T12:00:00Z");
  return f.memories.map((m, i) => {
    const at = new Date(t0 + i * 60_000).toISOString();
    return { id: m.id, channel: f.channel, user_id: null, category: "fact", content: m.content, importance: 1, created_at: at, last_accessed: at };
  });
}

/** Ranks as the service's recall does: BM25 over the query's terms, or importance when it has none. */
export function indexRanker(index: MemoryIndex): Ranker {
  const all = () => true;
  return (query, limit) => {
    const q = terms(query);
    const found = q.length > 0 ? index.search(q, all, limit) : index.top(all, limit);
    return found.map((r) => r.doc.memory.id);
  };
}

/** Recall@1 and @5 of a ranking on the fixture. */
export function scoreRecall(f: ParaphraseFixture, rank: Ranker): RecallScore {
  const ranks = f.questions.map((q) => rank(q.query, 5).indexOf(q.expect) + 1);
  return { questions: ranks.length, at1: ranks.filter((r) => r === 1).length, at5: ranks.filter((r) => r > 0).length, ranks };
}
