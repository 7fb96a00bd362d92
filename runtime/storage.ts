// What each KV bucket and the events stream may hold — max age, max bytes, what happens
// when full — and the setting that raises each limit (README "Storage and limits" is the
// operator's view of this table). Also recognises a write the server refused for lack of
// space and turns it into the `storage_full` error callers see.
//
// Why each choice:
//   limits    documents only matter for their window (the longest is a 25-hour day): the
//             bucket's max age, counted from a key's last write (one revision per key is
//             kept), is its TTL. Full → refuse: dropping a live window would over-admit.
//   usage     daily counters, kept usage_max_age_days after their day's last write. Full →
//             the oldest days go: today's counting must not stop for last year's figures.
//   personas  definitions and selections, kept until changed. Full → refuse.
//   memory    long-term memories live decay_days after their last use (by then recall no
//             longer shows them), exchanges and summaries history_ttl_days (their own TTL,
//             lib/memory). Full → refuse new keys; updates and deletes still go through,
//             so forgetting frees space.
//   events    a log for consumers to replay: max age, and the oldest go when full.
// Every bucket allows per-message TTLs (delete markers expire after marker_ttl_seconds,
// keys written with a TTL go by themselves) and has the server mark a key that expired,
// so watching caches hear of it.
import { DiscardPolicy } from "nats";
import { settingName, type Config } from "../lib/config";
import { RoseyError } from "../lib/errors";
import { LIMITS_TTL_MS } from "../lib/limiter";

export const BUCKETS = {
  limits: "ROSEY_LLM_LIMITS",
  usage: "ROSEY_LLM_USAGE",
  personas: "ROSEY_LLM_PERSONAS",
  memory: "ROSEY_LLM_MEMORY",
} as const;

export type BucketKind = keyof typeof BUCKETS;

export const EVENTS_STREAM = "ROSEY_LLM_EVENTS";

const DAY_MS = 86_400_000;

export interface StoreLimits {
  /** 0 = no age limit. */
  maxAgeMs: number;
  maxBytes: number;
  /** Full: Old drops the oldest messages, New refuses new ones. */
  discard: DiscardPolicy;
  /** The configuration path of maxBytes. */
  bytesSetting: string;
}

/** The setting bounding a bucket's size: `storage.<kind>_max_bytes`. */
const bytesSetting = (kind: BucketKind) => `storage.${kind}_max_bytes` as const;

/** Limits of every bucket under `config`. */
export function bucketLimits(config: Config): Record<BucketKind, StoreLimits> {
  const s = config.storage;
  const limits = (kind: BucketKind, maxAgeMs: number, discard: DiscardPolicy): StoreLimits => ({
    maxAgeMs,
    maxBytes: s[`${kind}_max_bytes`],
    discard,
    bytesSetting: bytesSetting(kind),
  });
  const memoryDays = Math.max(config.memory.decay_days, s.history_ttl_days) + 1;
  return {
    limits: limits("limits", LIMITS_TTL_MS, DiscardPolicy.New),
    usage: limits("usage", s.usage_max_age_days * DAY_MS, DiscardPolicy.Old),
    personas: limits("personas", 0, DiscardPolicy.New),
    memory: limits("memory", memoryDays * DAY_MS, DiscardPolicy.New),
  };
}

/** Limits of the events stream under `config`. */
export function eventsLimits(config: Config): StoreLimits {
  return {
    maxAgeMs: config.events.max_age_days * DAY_MS,
    maxBytes: config.events.max_bytes,
    discard: DiscardPolicy.Old,
    bytesSetting: "events.max_bytes",
  };
}

/** How long a key's TTL is when it should live `days` (the Kv option is in seconds). */
export const ttlDays = (days: number) => days * 86_400;

/** JetStream errors of a write refused for space: the stream's own limit, or the server's or account's. */
const STREAM_LIMIT = 10077;
const SERVER_OR_ACCOUNT = new Set([10002, 10023, 10028, 10047]);

/** True when the server refused a write because a stream, the account or the server is full. */
export function isStorageFull(err: unknown): boolean {
  const e = (err as { api_error?: { err_code?: number; description?: string } } | null)?.api_error;
  if (e?.err_code === STREAM_LIMIT) return /maximum (bytes|messages)/i.test(e.description ?? "");
  return e?.err_code !== undefined && SERVER_OR_ACCOUNT.has(e.err_code);
}

/** The error a caller gets for a write `bucket` refused for space; the message names what to raise. */
export function storageFullError(bucket: string, err: unknown): RoseyError {
  const kind = (Object.keys(BUCKETS) as BucketKind[]).find((k) => BUCKETS[k] === bucket);
  const own = (err as { api_error?: { err_code?: number } }).api_error?.err_code === STREAM_LIMIT;
  const what = own
    ? `${bucket} reached its size limit${kind ? ` set by ${settingName(bytesSetting(kind))}` : ""}`
    : `the NATS server or account has no JetStream storage left for ${bucket}`;
  return new RoseyError("storage_full", `Storage full: ${what}; the write was refused`, { cause: err });
}
