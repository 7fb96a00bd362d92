// Stored shapes of the ROSEY_LLM_LIMITS bucket, and the limiter's construction options.
import type { Config } from "../config";
import type { Clock, Events, Limiter, Logger } from "../context/types";
import type { Kv } from "../kv";
import type { ThresholdEvent } from "../schemas";
import type { Log } from "./log";

/** A threshold event stored with the write that crossed the threshold, until its publish is acknowledged (pending.ts). */
export interface PendingEvent {
  /** Its Nats-Msg-Id: a retried publish is stored once. */
  id: string;
  /** When it was stored (ms): an entry older than the grace period is republished by the next writer. */
  at: number;
  ev: ThresholdEvent;
}

/** Requests completed and tokens settled, in all and per provider ([requests, tokens]). */
export interface Spend {
  q: number;
  u: number;
  p: Record<string, [number, number]>;
}

/** One calendar day (local date `w`) of a user or channel: its usage. */
export interface DayUsage extends Spend {
  w: string;
}

/**
 * Key `u.<user>`: the admission times of the last hour (log.ts) and every other limit of
 * one user in one document, so one compare-and-set admits against the minute, hour, day and
 * the token quota at once; and the user's usage today.
 */
export interface UserDoc extends Log {
  /** Today: admissions (per-day limit) and usage; `u` is also what the token quota counts as spent. */
  d?: DayUsage & { n: number };
  /** Reservations in flight: id → [tokens, ms after which anyone may take it back]. */
  r?: Record<string, [number, number]>;
  /** Threshold markers: hourly → ms of the last event; daily and tokens → the day. */
  f?: { h?: number; d?: string; t?: string };
  e?: PendingEvent[];
}

/** Key `c.<channel>`: the channel's rolling hour and its usage today. */
export interface ChannelDoc extends Log {
  d?: DayUsage;
  f?: { h?: number };
  e?: PendingEvent[];
}

/** One instance's share of the global budget (lease.ts). */
export interface Lease {
  /** Tokens granted to the instance and not given back, including what it spent. */
  n: number;
  /** When anyone may take the lease back (ms) unless the instance renews it first. */
  exp: number;
  /** The instance's spend (InstanceDoc.u) when the lease was opened: spend before it is in `spent`. */
  b: number;
  /** Its spend as of its last write here (for the threshold and refusals). */
  s: number;
}

/** Key `g.<local date>`: the day's global token budget. */
export interface GlobalDoc {
  /** Tokens spent under leases that are closed. */
  spent: number;
  /** Open leases by instance tag. */
  leases: Record<string, Lease>;
  /** The day, once the threshold event fired. */
  f?: string;
  e?: PendingEvent[];
}

/**
 * Key `i.<local date>.<instance tag>`: what one instance spent today. Written before every
 * reply (the service's totals are the sum over instances) and read when its lease is taken
 * back; `x` marks it closed by whoever took the lease back.
 */
export interface InstanceDoc extends Spend {
  x?: true;
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
  /** Largest block of global budget one lease takes (default 1 % of the budget, at least 1,000). */
  leaseTokens?: number;
  /** Return an idle instance's unused lease after this long without admissions (default 5 s). */
  leaseIdleMs?: number;
  /** How often an instance holding a lease renews it (default 10 s). */
  heartbeatMs?: number;
  /** How long a lease stays valid without renewal (default 30 s). */
  leaseTtlMs?: number;
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
  /** Writes pending channel usage and returns this instance's lease; call when the runtime drains. */
  close(): Promise<void>;
}

/**
 * Bucket max age the limiter needs: longer than the longest day (25 h across DST) so a live
 * document is never dropped; 48 h leaves a margin. Idle documents expire with it.
 */
export const LIMITS_TTL_MS = 48 * 3_600_000;
