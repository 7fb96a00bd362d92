// Stored shapes of the ROSEY_LLM_LIMITS bucket and the limiter's construction options.
import { z } from "zod";
import type { Config } from "../config";
import type { Clock, Events, Limiter, Logger } from "../context/types";
import type { Kv } from "../kv";

/** A request counter for one window; `w` names the window (see calendar.ts). */
export const Counter = z.object({ w: z.string(), n: z.number() });
export type Counter = z.infer<typeof Counter>;

/**
 * Key `u.<user>`: every window of one user in one document, so one compare-and-set
 * admits against minute, hour, day and the token quota at once.
 */
export const UserDoc = z.object({
  m: Counter.optional(),
  h: Counter.optional(),
  /** Day window: requests, tokens held (settled + reserved), tokens settled. */
  d: Counter.extend({ t: z.number(), u: z.number() }).optional(),
  /** Period whose threshold event has fired, per threshold type (create-once marker). */
  f: z.object({ h: z.string().optional(), d: z.string().optional(), t: z.string().optional() }).optional(),
});
export type UserDoc = z.infer<typeof UserDoc>;

/** Key `c.<channel>`: the channel's hour window. */
export const ChannelDoc = z.object({
  h: Counter.optional(),
  f: z.object({ h: z.string().optional() }).optional(),
});
export type ChannelDoc = z.infer<typeof ChannelDoc>;

/** Key `g.<local date>`: global token budget handed out to instances as leases. */
export const GlobalDoc = z.object({
  /** Tokens leased out to instances (net of what they returned). */
  granted: z.number(),
  /** True once the threshold event of this day fired. */
  fired: z.boolean().optional(),
});
export type GlobalDoc = z.infer<typeof GlobalDoc>;

/** The shape of the document stored under a key of the bucket (a malformed one reads as absent). */
export const docSchema = (key: string) => (key.startsWith("g.") ? GlobalDoc : key.startsWith("c.") ? ChannelDoc : UserDoc);

export interface LimiterOptions {
  /** The ROSEY_LLM_LIMITS bucket (max age ≥ 25 h; see LIMITS_TTL_MS). */
  kv: Kv;
  config: Config;
  clock: Clock;
  events: Events;
  log: Logger;
  /** Largest block of global budget one lease takes (default 1 % of the budget, at least 1,000). */
  leaseTokens?: number;
  /** Return an idle instance's unused lease after this long without admissions (default 5 s). */
  leaseIdleMs?: number;
}

/** Counters of the limiter's own work, for benchmarks and logs. */
export interface LimiterStats {
  admitted: number;
  refused: number;
  /** Compare-and-set conflicts met (each one a re-read and retry). */
  casRetries: number;
  /** Admissions undone because another window refused after a race. */
  rollbacks: number;
  /** Leases taken from the global budget. */
  leases: number;
}

/** The limiter the runtime builds: the Ctx part plus stats and a close that returns unused leases. */
export interface RuntimeLimiter extends Limiter {
  /** What is left for a user; with a channel, per_hour is the tighter of the user's and the channel's. */
  remaining(user?: string, channel?: string): ReturnType<Limiter["remaining"]>;
  readonly stats: LimiterStats;
  /** Returns this instance's unused global lease; call when the runtime drains. */
  close(): Promise<void>;
}

/**
 * Bucket max age the limiter needs: longer than the longest window (a 25-hour DST day)
 * so an active window is never dropped; 48 h leaves a margin. Documents of idle users
 * expire with it, which is the cleanup.
 */
export const LIMITS_TTL_MS = 48 * 3_600_000;
