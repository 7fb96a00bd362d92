// Recall that fuses two rankings of a channel's memories, BM25 over their words (bm25.ts) and
// the cosine similarity of their embeddings to the query's (vectors.ts), by reciprocal rank
// fusion: a memory scores the sum of 1 / (RRF_K + its rank) over the rankings it is in, so
// one high in both beats one at the top of only one, and neither ranking's score scale
// matters. Ties go as in any recall: importance, then recency of use (ranksBefore).
import { insertTop, type Doc, type Ranked } from "./bm25";
import type { ChannelState } from "./channel";
import type { MemoryVector } from "./embedding";

/** The usual constant of reciprocal rank fusion: how little a first rank counts more than a tenth. */
export const RRF_K = 60;
/** How deep each ranking is read before fusing. */
export const FUSION_DEPTH = 50;

/** The dot product of two vectors of one length: their cosine similarity, when both are unit vectors. */
export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** The `depth` visible memories whose vectors (of the query's model) are most similar to it, with any similarity at all. */
export function similar(st: ChannelState, query: MemoryVector, visible: (d: Doc) => boolean, depth: number): Ranked[] {
  const top: Ranked[] = [];
  for (const [id, v] of st.vectors) {
    if (v.model !== query.model || v.vector.length !== query.vector.length) continue;
    const doc = st.memories.get(id);
    if (!doc || !visible(doc)) continue;
    const score = dot(query.vector, v.vector);
    if (score > 0) insertTop(top, { doc, score }, depth);
  }
  return top;
}

/** The best `limit` memories of the rankings by reciprocal rank fusion. */
export function fuse(rankings: Ranked[][], limit: number): Ranked[] {
  const scores = new Map<Doc, number>();
  for (const ranking of rankings) ranking.forEach((r, i) => scores.set(r.doc, (scores.get(r.doc) ?? 0) + 1 / (RRF_K + i + 1)));
  const top: Ranked[] = [];
  for (const [doc, score] of scores) insertTop(top, { doc, score }, limit);
  return top;
}

/** Recall by words and meaning: BM25 of the query's terms fused with the similarity of its vector. */
export function fusedSearch(st: ChannelState, terms: string[], query: MemoryVector, visible: (d: Doc) => boolean, limit: number): Ranked[] {
  const semantic = similar(st, query, visible, FUSION_DEPTH);
  const lexical = st.memories.search(terms, visible, FUSION_DEPTH);
  return semantic.length === 0 ? lexical.slice(0, limit) : fuse([lexical, semantic], limit);
}
