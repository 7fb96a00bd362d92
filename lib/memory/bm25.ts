// The in-memory recall index of one channel: an inverted index with Okapi BM25 scoring.
//
// A query only visits the postings of its own terms and of their related terms (synonyms and
// narrower words, see synonyms.ts), so recall over 10,000 memories costs the size of a few
// postings lists, not a scan. A query term scores a memory by its best match: the term itself,
// or a related term at RELATED_WEIGHT, so an exact match outranks a paraphrase. Ranking is
// lexicographic as the contract says: relevance first, importance breaks (near-)ties, then
// recency of use.
import type { Memory } from "../schemas";
import { wordnetTerms, type RelatedTerms } from "./synonyms";
import { dedupeKey, jaccard, terms } from "./text";

const K1 = 1.2;
const B = 0.75;
/** Scores within this relative distance count as equally relevant. */
const TIE = 1e-9;
/** Jaccard similarity at or above which two memories in one scope are the same memory. */
export const NEAR_DUPLICATE = 0.9;
/** A match through a related term counts this much of an exact match. */
export const RELATED_WEIGHT = 0.5;
/** At most this many related terms present in the index are matched for one query term. */
export const MAX_RELATED = 32;

/** One indexed memory. Its terms are not kept here: the postings hold them with their counts. */
export interface Doc {
  memory: Memory;
  revision: number;
  /** Terms in the content, and distinct ones. */
  len: number;
  distinct: number;
  /** last_accessed in ms, parsed once. */
  accessed: number;
  created: number;
}

/** A memory and its relevance to the query that found it. */
export interface Ranked {
  doc: Doc;
  score: number;
}

/** True when `a` ranks before `b`: relevance, then importance, then recency of use. */
export function ranksBefore(a: Ranked, b: Ranked): boolean {
  const scale = Math.max(Math.abs(a.score), Math.abs(b.score), 1);
  if (Math.abs(a.score - b.score) > TIE * scale) return a.score > b.score;
  const ia = a.doc.memory.importance;
  const ib = b.doc.memory.importance;
  if (ia !== ib) return ia > ib;
  if (a.doc.accessed !== b.doc.accessed) return a.doc.accessed > b.doc.accessed;
  if (a.doc.created !== b.doc.created) return a.doc.created > b.doc.created;
  return a.doc.memory.id < b.doc.memory.id;
}

/** Inserts into a list kept sorted by ranksBefore and at most `limit` long. */
export function insertTop(top: Ranked[], r: Ranked, limit: number): void {
  if (top.length >= limit && !ranksBefore(r, top[top.length - 1])) return;
  let i = top.length;
  while (i > 0 && ranksBefore(r, top[i - 1])) i--;
  top.splice(i, 0, r);
  if (top.length > limit) top.pop();
}

export class MemoryIndex {
  private readonly docs = new Map<string, Doc>();
  /**
   * The memories holding each term, as one flat array of pairs: id, then how often the term
   * occurs in it. Most postings of a channel hold one or two memories, and a small array takes
   * a fraction of a Set's or Map's memory; keeping the counts here spares each memory a map of
   * its own terms (a memory is re-tokenized on the rare occasions it leaves the index).
   */
  private readonly postings = new Map<string, Array<string | number>>();
  private totalLen = 0;

  /** `related` gives the terms a query term may also match; exactTerms turns that off. */
  constructor(private readonly related: RelatedTerms = wordnetTerms) {}

  /** Number of indexed memories. */
  get size(): number {
    return this.docs.size;
  }

  get(id: string): Doc | undefined {
    return this.docs.get(id);
  }

  values(): IterableIterator<Doc> {
    return this.docs.values();
  }

  /** Adds or replaces a memory; ignores a revision not newer than the one indexed. */
  upsert(memory: Memory, revision: number): void {
    const old = this.docs.get(memory.id);
    if (old && old.revision >= revision) return;
    const accessed = Date.parse(memory.last_accessed);
    const created = Date.parse(memory.created_at);
    if (old && old.memory.content === memory.content) {
      // Touches and importance changes leave the text alone: skip re-tokenizing.
      Object.assign(old, { memory, revision, accessed, created });
      return;
    }
    if (old) this.remove(memory.id);
    const tf = termCounts(memory.content);
    for (const [t, n] of tf) {
      const p = this.postings.get(t);
      if (p) p.push(memory.id, n);
      else this.postings.set(t, [memory.id, n]);
    }
    const len = sum(tf.values());
    this.docs.set(memory.id, { memory, revision, len, distinct: tf.size, accessed, created });
    this.totalLen += len;
  }

  /** Marks a memory used now, ahead of the write that stores it. */
  touch(id: string, at: number): void {
    const d = this.docs.get(id);
    if (!d || d.accessed >= at) return;
    d.accessed = at;
    d.memory = { ...d.memory, last_accessed: new Date(at).toISOString() };
  }

  remove(id: string): Doc | undefined {
    const doc = this.docs.get(id);
    if (!doc) return undefined;
    for (const t of termCounts(doc.memory.content).keys()) {
      const p = this.postings.get(t);
      if (!p) continue;
      if (p.length === 2) this.postings.delete(t);
      else p.splice(p.indexOf(id), 2);
    }
    this.docs.delete(id);
    this.totalLen -= doc.len;
    return doc;
  }

  /** The best `limit` memories for the query terms among those `visible` accepts. */
  search(query: string[], visible: (d: Doc) => boolean, limit: number): Ranked[] {
    if (this.docs.size === 0 || limit <= 0) return [];
    const qtf = new Map<string, number>();
    for (const t of query) qtf.set(t, (qtf.get(t) ?? 0) + 1);
    const scores = new Map<string, number>();
    for (const [t, qn] of qtf) {
      const best = new Map<string, number>();
      this.match(t, 1, best);
      let used = 0;
      for (const r of this.related(t)) {
        if (used === MAX_RELATED) break;
        // A word the query has itself scores on its own.
        if (qtf.has(r) || !this.postings.has(r)) continue;
        used++;
        this.match(r, RELATED_WEIGHT, best);
      }
      for (const [id, s] of best) scores.set(id, (scores.get(id) ?? 0) + qn * s);
    }
    const top: Ranked[] = [];
    for (const [id, score] of scores) {
      const doc = this.docs.get(id)!;
      if (visible(doc)) insertTop(top, { doc, score }, limit);
    }
    return top;
  }

  /** Raises best[id] to `weight` times the BM25 score of `term` for every memory that has it. */
  private match(term: string, weight: number, best: Map<string, number>): void {
    const post = this.postings.get(term);
    if (!post) return;
    const n = this.docs.size;
    const holders = post.length / 2;
    const avgdl = this.totalLen / n || 1;
    const idf = Math.log(1 + (n - holders + 0.5) / (holders + 0.5));
    for (let i = 0; i < post.length; i += 2) {
      const id = post[i] as string;
      const f = post[i + 1] as number;
      const d = this.docs.get(id)!;
      const s = (weight * idf * f * (K1 + 1)) / (f + K1 * (1 - B + (B * d.len) / avgdl));
      if (s > (best.get(id) ?? 0)) best.set(id, s);
    }
  }

  /** Every visible memory ranked by importance, then recency: for queries with no searchable word. */
  top(visible: (d: Doc) => boolean, limit: number): Ranked[] {
    const top: Ranked[] = [];
    for (const doc of this.docs.values()) if (visible(doc)) insertTop(top, { doc, score: 0 }, limit);
    return top;
  }

  /**
   * A memory of the same scope whose words are near-identical to `content`. Such a memory
   * shares the content's rarest terms, so only their postings are visited.
   */
  nearDuplicate(content: string, userId: string | null): Doc | undefined {
    const mine = dedupeKey(content);
    const rare = [...termCounts(content).keys()]
      .map((t) => this.postings.get(t))
      .filter((p): p is Array<string | number> => !!p)
      .sort((a, b) => a.length - b.length)
      .slice(0, 2);
    for (const post of rare) {
      for (let i = 0; i < post.length; i += 2) {
        const d = this.docs.get(post[i] as string)!;
        if (d.memory.user_id === userId && jaccard(mine, dedupeKey(d.memory.content)) >= NEAR_DUPLICATE) return d;
      }
    }
    return undefined;
  }
}

/** How often each term occurs in a text. */
function termCounts(text: string): Map<string, number> {
  const tf = new Map<string, number>();
  for (const t of terms(text)) tf.set(t, (tf.get(t) ?? 0) + 1);
  return tf;
}

const sum = (xs: Iterable<number>) => {
  let n = 0;
  for (const x of xs) n += x;
  return n;
};
