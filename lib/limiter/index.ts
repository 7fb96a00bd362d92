// Public surface of the limiter: request limits, token quotas, the global budget and write limits.
export { createLimiter, refusalMessage, thresholdEventId } from "./limiter";
export { calendar, secondsUntil, type Calendar, type Window, type Windows } from "./calendar";
export { LIMITS_TTL_MS, type LimiterOptions, type LimiterStats, type RuntimeLimiter } from "./types";
export { createWriteLimiter, secondsUntilRoom, type WriteSubject } from "./writes";
