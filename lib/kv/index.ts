export * from "./types";
export { MemoryKv, matchesFilter } from "./memory";
export {
  casUpdate,
  createBatcher,
  getJson,
  readDoc,
  type Batcher,
  type BatcherOptions,
  type CasOptions,
  type CasOutcome,
  type CasResult,
  type Doc,
  type Known,
  type Step,
} from "./cas";
export { checkedKv } from "./checked";
export { CONTENDED_MS, GroupCache, staleAfter, type GroupCacheOptions } from "./group-cache";
