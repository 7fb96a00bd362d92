// Public surface of the limiter: request limits, token quotas and the global budget.
export { createLimiter, refusalMessage, thresholdEventId } from "./limiter";
export { calendar, secondsUntil, type Calendar, type Window, type Windows } from "./calendar";
export { LIMITS_TTL_MS, type LimiterOptions, type LimiterStats, type RuntimeLimiter } from "./types";
