// Public surface of conversation memory: history, summaries and long-term memories.
export { createMemory } from "./memory";
export { SUMMARY_PROMPT, MAX_SUMMARIES, CLAIM_TTL_MS } from "./summaries";
export { TOUCH_EVERY_MS, SWEEP_EVERY_MS } from "./facts";
export { MemoryIndex, ranksBefore, NEAR_DUPLICATE, type Doc, type Ranked } from "./bm25";
export { wordnetTerms, exactTerms, type RelatedTerms } from "./synonyms";
export { terms, words, stem, STOP_WORDS, jaccard, dedupeKey } from "./text";
export type * from "./types";
