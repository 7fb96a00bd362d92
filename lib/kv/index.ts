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
export { WatchProgress } from "./progress";
export { checkedKv } from "./checked";
