// Stored shapes of the ROSEY_LLM_LIMITS bucket, and the limiter's construction options.
import { z } from "zod";
import type { Config } from "../config";
import type { Clock, Events, Limiter, Logger } from "../context/types";
import type { Kv } from "../kv";
import { ThresholdEvent } from "../schemas";

/** A threshold event stored with the write that crossed the threshold, until its publish is acknowledged (pending.ts). */
export const PendingEvent = z.object({
  /** Its Nats-Msg-Id: a retried publish is stored once. */
  id: z.string(),
  /** When it was stored (ms): an entry older than the grace period is republished by the next writer. */
  at: z.number(),
  ev: ThresholdEvent,
});
export type PendingEvent = z.infer<typeof PendingEvent>;

const count = z.number().min(0);

/** Requests completed and tokens settled, in all and per provider ([requests, tokens]). */
export const Spend = z.object({ q: count, u: count, p: z.record(z.string(), z.tuple([count, count])) });
export type Spend = z.infer<typeof Spend>;

/** One calendar day (local date `w`) of a user or channel: its usage. */
export const DayUsage = Spend.extend({ w: z.string() });
export type DayUsage = z.infer<typeof DayUsage>;

/** The admission times of a key's last hour (log.ts). */
const LogFields = {
  l: z.array(z.number()).optional(),
  o: z.array(z.tuple([z.number(), count])).optional(),
};

/**
 * Key `u.<user>`: the admission times of the last hour (log.ts) and every other limit of
 * one user in one document, so one compare-and-set admits against the minute, hour, day and
 * the token quota at once; and the user's usage today.
 */
export const UserDoc = z.strictObject({
  ...LogFields,
  /** Today: admissions (per-day limit) and usage; `u` is also what the token quota counts as spent. */
  d: DayUsage.extend({ n: count }).optional(),
  /** Reservations in flight: id → [tokens, ms after which anyone may take it back]. */
  r: z.record(z.string(), z.tuple([count, z.number()])).optional(),
  /** Threshold markers: hourly → ms of the last event; daily and tokens → the day. */
  f: z.object({ h: z.number().optional(), d: z.string().optional(), t: z.string().optional() }).optional(),
  e: z.array(PendingEvent).optional(),
});
export type UserDoc = z.infer<typeof UserDoc>;

/**
 * The limiter's key `c.<channel>`, stored in the memory bucket as `l.<channel>.doc` (among the
 * channel's keys there; in the limits bucket before): the channel's rolling hour and its usage today.
 */
export const ChannelDoc = z.strictObject({
  ...LogFields,
  d: DayUsage.optional(),
  f: z.object({ h: z.number().optional() }).optional(),
  e: z.array(PendingEvent).optional(),
});
export type ChannelDoc = z.infer<typeof ChannelDoc>;

/** One instance's share of the global budget (lease.ts). */
export const Lease = z.object({
  /** Tokens granted to the instance and not given back, including what it spent. */
  n: z.number(),
  /** When anyone may take the lease back (ms) unless the instance renews it first. */
  exp: z.number(),
  /** The part of the instance's spend (InstanceDoc.u) already in `spent` when the lease was opened. */
  b: count,
  /** Its spend as of its last write here (for the threshold and refusals). */
  s: count,
});
export type Lease = z.infer<typeof Lease>;

/** Key `g.<local date>`: the day's global token budget. */
export const GlobalDoc = z.strictObject({
  /** Tokens spent under leases that are closed. */
  spent: count,
  /** Open leases by instance tag. */
  leases: z.record(z.string(), Lease),
  /** The day, once the threshold event fired. */
  f: z.string().optional(),
  e: z.array(PendingEvent).optional(),
});
export type GlobalDoc = z.infer<typeof GlobalDoc>;

/**
 * Key `i.<local date>.<instance tag>`: what one instance spent today. Written before every
 * reply (the service's totals are the sum over instances) and read when its lease is taken
 * back; `x` marks it closed by whoever took the lease back.
 */
export const InstanceDoc = z.strictObject({ ...Spend.shape, x: z.literal(true).optional() });
export type InstanceDoc = z.infer<typeof InstanceDoc>;

/**
 * The shape of the document stored under a key of the bucket. A malformed one — including
 * one with fields these shapes do not have, e.g. another version's — reads as absent.
 */
export function docSchema(key: string): z.ZodType {
  switch (key[0]) {
    case "g":
      return GlobalDoc;
    case "c":
      return ChannelDoc;
    case "i":
      return InstanceDoc;
    default:
      return UserDoc;
  }
}

export interface LimiterOptions {
  /** The ROSEY_LLM_LIMITS bucket (max age ≥ 25 h; see LIMITS_TTL_MS). */
  kv: Kv;
  config: Config;
  clock: Clock;
  events: Events;
  log: Logger;
  /** Names this instance's lease and spend (default: a random id). */
  instance?: string;
  /** The ROSEY_LLM_USAGE bucket, where finished days are kept (history.ts); none: not kept. */
  history?: Kv;
  /** Largest block of global budget one lease takes (default 1 % of the budget, at least 1,000). */
  leaseTokens?: number;
  /** Return an idle instance's unused lease after this long without admissions (default 5 s). */
  leaseIdleMs?: number;
  /** How often an instance holding a lease renews it (default 10 s). */
  heartbeatMs?: number;
  /** How long a lease stays valid without renewal (default 30 s). */
  leaseTtlMs?: number;
  /** Timing of the sweep that keeps finished days in history (sweep.ts); runs when `history` is given and `kv` can scan. */
  sweep?: Partial<SweepSettings>;
  /**
   * The memory bucket's scan, where channels' documents are kept (lib/memory/limits-doc.ts):
   * the sweep walks them too. Without it, only the limits bucket is walked.
   */
  channelScan?: Kv["scan"];
  /** How long a call's channel usage waits for the channel's next admission before it is written on its own (default 1 s; at most 1.5 times that). */
  usageFlushMs?: number;
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
  /** Leases of other instances taken back after they expired. */
  reclaimed: number;
}

/** Usage not yet written to a channel's document (see limiter.ts, channel usage). */
export type PendingUsage = (channel: string) => Spend | undefined;

/** The limiter the runtime builds: the Ctx part plus stats, drain and what usage reads need. */
export interface RuntimeLimiter extends Limiter {
  /** What is left for a user; with a channel, per_hour is the tighter of the user's and the channel's. */
  remaining(user?: string, channel?: string): ReturnType<Limiter["remaining"]>;
  readonly stats: LimiterStats;
  /** This instance's channel usage not yet stored (usage reads add it). */
  readonly pendingUsage: PendingUsage;
  /** One step of the sweep of finished days (sweep.ts) now; done at once without one. */
  sweep(): Promise<SweepStep>;
  /** Writes pending channel usage and returns this instance's lease; call when the runtime drains. */
  close(): Promise<void>;
}

/**
 * Bucket max age the limiter needs: longer than the longest day (25 h across DST) so a live
 * document is never dropped; 48 h leaves a margin. Idle documents expire with it.
 */
export const LIMITS_TTL_MS = 48 * 3_600_000;

/** How the sweep of finished days walks the limits and memory buckets (sweep.ts). */
export interface SweepSettings {
  /** Messages read per walk and step (default 256). */
  batch: number;
  /** A day is finished this long after it ended (default 10 minutes). */
  graceMs: number;
  /** Steps come this often while there is nothing to walk (default 60 s; 0: only when sweep() is called). */
  idleMs: number;
  /** ...and this often while a walk is under way (default 250 ms). */
  busyMs: number;
}

/** What one step of the sweep did. */
export interface SweepStep {
  /** Messages read. */
  read: number;
  /** Days found finished and kept (or found kept already). */
  kept: number;
  /** The walk reached an open day or the end: nothing more to do until the next day. */
  done: boolean;
}
