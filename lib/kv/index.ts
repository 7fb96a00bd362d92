export * from "./types";
export { MemoryKv, matchesFilter } from "./memory";
export { casUpdate, getJson, type CasOptions, type CasResult } from "./cas";
export { GroupCache, STALE_AFTER_MS, type GroupCacheOptions } from "./group-cache";
