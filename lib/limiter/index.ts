// Public surface of the limiter: request limits, token quotas, the global budget, the usage they record and write limits.
export { channelKey, createLimiter, refusalMessage, RESERVATION_GRACE_MS, userKey } from "./limiter";
export { thresholdEventId } from "./pending";
export { calendar, secondsUntil, type Calendar, type Window } from "./calendar";
export { instancesOf } from "./lease";
export {
  docSchema,
  LIMITS_TTL_MS,
  type ChannelDoc,
  type InstanceDoc,
  type LimiterOptions,
  type LimiterStats,
  type PendingUsage,
  type RuntimeLimiter,
  type Spend,
  type UserDoc,
} from "./types";
export { createWriteLimiter, secondsUntilRoom, type WriteSubject } from "./writes";
