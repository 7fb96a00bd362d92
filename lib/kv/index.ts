export * from "./types";
export { MemoryKv, matchesFilter } from "./memory";
export { casUpdate, getJson, type CasOptions, type CasResult } from "./cas";
export { WatchProgress } from "./progress";
export { checkedKv } from "./checked";
