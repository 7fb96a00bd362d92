export * from "./types";
export { MemoryKv, matchesFilter } from "./memory";
export { casUpdate, getJson, type CasOptions, type CasResult } from "./cas";
export { checkedKv } from "./checked";
export { GroupCache, staleAfter, type GroupCacheOptions } from "./group-cache";
