// Creates the KV buckets and the events stream, or brings an existing one's replicas and
// limits (storage.ts) in line with configuration. Safe to run from every instance at every
// start.
//
// The bucket handles it returns ride out a JetStream leader election. When a cluster node
// dies, each stream it led has no leader for a few seconds; meanwhile a write to it (and a
// read that needs the leader) comes back at once as "503 no responders". Without a retry,
// every request in that window fails with `internal` even though the cluster heals by
// itself. A 503 means no server took the message, so nothing was written and retrying is
// safe. A write that timed out, though, may have been stored: retried as is, the CAS would
// conflict with itself, re-read and count twice. So every write carries a Nats-Msg-Id made
// once per write, and a retry of a stored one is recognised: answered "duplicate" with the
// original revision by the stream's dedupe check, or — when the server checks the expected
// revision first, as 2.15 does — refused as a conflict while the key's last message carries
// our id, which is then the write's revision. Either way it lands once. A full stream also
// answers 503 (with its own error code): that is not retried.
import { randomUUID } from "node:crypto";
import {
  Empty,
  RetentionPolicy,
  StorageType,
  headers,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  type KvPutOptions,
  type StreamConfig,
} from "nats";
import { settingName, type Config } from "../lib/config";
import type { JsPublish } from "./js-publish";
import type { KvWriteOptions, Within } from "../lib/kv";
import { BUCKETS, EVENTS_STREAM, bucketLimits, eventsLimits, isStorageFull, type BucketKind, type StoreLimits } from "./storage";

export { BUCKETS, EVENTS_STREAM };

/**
 * A bucket handle from leaderTolerant: a nats.js KV whose writes may also carry a TTL (the
 * nats.js 2.29 client has no way to send one) and whose deletes leave expiring markers.
 */
export interface TtlKV extends KV {
  readonly ttlWrites: true;
  put(key: string, data: Uint8Array, opts?: Partial<KvPutOptions> & KvWriteOptions & { within?: Within }): Promise<number>;
  create(key: string, data: Uint8Array, opts?: KvWriteOptions): Promise<number>;
  update(key: string, data: Uint8Array, version: number, opts?: KvWriteOptions): Promise<number>;
}

export type Buckets = Record<BucketKind, TtlKV>;

const nanos = (ms: number) => ms * 1_000_000;

/** Stream fields of nats-server ≥ 2.11 that the nats.js 2.29 types lack. */
interface TtlStreamFields {
  /** Messages may carry a Nats-TTL header. */
  allow_msg_ttl?: boolean;
  /** When a key expires, the server leaves a marker (living this long, ns) so watches see it go. */
  subject_delete_marker_ttl?: number;
}

/**
 * Waits (bounded) until a stream whose replicas just changed has a leader and all its
 * replicas current: writes during the move can stall, and the first requests should not
 * pay for it.
 */
export async function waitForReplicas(jsm: JetStreamManager, stream: string, replicas: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await jsm.streams.info(stream).catch(() => null);
    const reps = info?.cluster?.replicas ?? [];
    if (info?.cluster?.leader && reps.length === replicas - 1 && reps.every((r) => r.current && !r.offline)) return;
    if (Date.now() > deadline) throw new Error(`stream ${stream} did not reach ${replicas} current replicas within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The stream fields that carry `limits` and the configured replicas. */
function limitFields(config: Config, limits: StoreLimits): Partial<StreamConfig> {
  return {
    num_replicas: config.replicas,
    max_age: nanos(limits.maxAgeMs),
    max_bytes: limits.maxBytes,
    discard: limits.discard,
  };
}

/** A server refusal to reserve a stream's size, with the setting that asked for it. */
function provisionError(stream: string, limits: StoreLimits, err: unknown): Error {
  if (!isStorageFull(err)) return err as Error;
  return new Error(
    `cannot give ${stream} ${limits.maxBytes} bytes, set by ${settingName(limits.bytesSetting)}: ${(err as Error).message}; ` +
      "lower the setting or give JetStream more storage",
    { cause: err },
  );
}

/**
 * Updates an existing stream where its configuration differs from `want` (and waits for new
 * replicas). Leaves it alone when it already matches, so every start can call it.
 */
async function align(jsm: JetStreamManager, stream: string, want: Partial<StreamConfig> & TtlStreamFields, limits: StoreLimits): Promise<void> {
  const have = (await jsm.streams.info(stream)).config as StreamConfig & TtlStreamFields;
  const differs = (Object.keys(want) as Array<keyof typeof want>).some((k) => JSON.stringify(have[k]) !== JSON.stringify(want[k]));
  if (!differs) return;
  // The TTL fields are server fields the client types lack (see TtlStreamFields).
  await jsm.streams.update(stream, { ...have, ...want } as StreamConfig).catch((err) => {
    throw provisionError(stream, limits, err);
  });
  if (have.num_replicas !== want.num_replicas) await waitForReplicas(jsm, stream, want.num_replicas!);
}

/**
 * Brings stream `stream` to `want`, or creates it from `create` plus `want` when absent: a
 * new stream is made in one request with every field, so a start needs no update rights.
 */
async function provision(jsm: JetStreamManager, stream: string, want: Partial<StreamConfig> & TtlStreamFields, limits: StoreLimits, create: Partial<StreamConfig>): Promise<void> {
  try {
    await align(jsm, stream, want, limits);
  } catch (err) {
    if (!/stream not found/i.test((err as Error).message)) throw err;
    // The TTL fields are server fields the client types lack (see TtlStreamFields).
    await jsm.streams.add({ name: stream, ...create, ...want } as StreamConfig).catch((e) => {
      throw provisionError(stream, limits, e);
    });
  }
}

const DUPLICATE_WINDOW = nanos(2 * 60 * 1000);

/** Ensures the events stream exists with the configured replicas, subjects and limits. */
export async function provisionStream(jsm: JetStreamManager, config: Config): Promise<void> {
  const limits = eventsLimits(config);
  const want = { subjects: [`${config.subject_prefix}.event.llm.>`], ...limitFields(config, limits) };
  await provision(jsm, EVENTS_STREAM, want, limits, { storage: StorageType.File, retention: RetentionPolicy.Limits, duplicate_window: DUPLICATE_WINDOW });
}

/** How long a KV operation keeps retrying while its stream has no leader. */
export const LEADERLESS_RETRY_MS = 15_000;

/** True when no server answered a request: the subject has no responder (no stream leader). */
export function isNoResponders(err: unknown): boolean {
  const e = err as { code?: string; api_error?: { code?: number } } | null;
  return (e?.code === "503" || e?.api_error?.code === 503) && !isStorageFull(err);
}

/** True for a request that got no answer in time (may or may not have been applied). */
const isTimeout = (err: unknown) => (err as { code?: string } | null)?.code === "TIMEOUT";

/**
 * Runs `op`, retrying while the stream has no leader (and, when `idempotent` — a read, or a
 * publish with a Nats-Msg-Id — on timeouts too), with backoff from 25 ms to 500 ms, for at
 * most `budgetMs`. Other errors (a CAS conflict, a bad key) are thrown at once.
 */
export async function retryLeaderless<T>(op: () => Promise<T>, idempotent: boolean, budgetMs = LEADERLESS_RETRY_MS): Promise<T> {
  const deadline = Date.now() + budgetMs;
  for (let i = 0; ; i++) {
    try {
      return await op();
    } catch (err) {
      const transient = isNoResponders(err) || (idempotent && isTimeout(err));
      if (!transient || Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, Math.min(500, 25 * 2 ** i) * (0.5 + Math.random() / 2)));
    }
  }
}

/** True for JetStream's "wrong last sequence": the key moved on from the expected revision. */
const isConflict = (err: unknown) => (err as { api_error?: { err_code?: number } } | null)?.api_error?.err_code === 10071;

/**
 * Headers of a write with a time-to-live (whole seconds), plus any others given. A write
 * `within` a filter names it: the expected sequence (sent as the key's, below) is then the
 * last one under the whole filter (nats-server 2.11+).
 */
function ttlHeaders(ttlSeconds: number | undefined, extra: Record<string, string> = {}, within?: { subject: string }) {
  const entries = Object.entries(extra);
  if (ttlSeconds !== undefined) entries.push(["Nats-TTL", `${ttlSeconds}s`]);
  if (within) entries.push(["Nats-Expected-Last-Subject-Sequence-Subject", within.subject]);
  if (entries.length === 0) return undefined;
  const h = headers();
  for (const [k, v] of entries) h.set(k, v);
  return h;
}

/** True for a stored entry that marks a removed key: a client delete/purge, or the server's marker of an expired key (empty). */
export const isMarker = (e: { operation: string; value: Uint8Array }) => e.operation !== "PUT" || e.value.length === 0;

/**
 * A KV handle whose operations wait out a leader election, with compare-and-set writes that
 * are safe to retry after a timeout (see the header). Keys are used as given: our keys are
 * already valid subject tokens (lib/keys) and the buckets are not mirrors, so a key's
 * subject is `$KV.<bucket>.<key>`. Writes may carry a TTL; deletes leave a marker that
 * expires after `markerTtlSeconds` (when given: the stream must allow message TTLs).
 */
export function leaderTolerant(
  kv: KV,
  js: JetStreamClient,
  bucket: string,
  budgetMs = LEADERLESS_RETRY_MS,
  markerTtlSeconds?: number,
  jsPublish: JsPublish = (subject, data, opts) => js.publish(subject, data, opts),
): TtlKV {
  /** Publishes to the key (if its revision is still `previous`, 0 = absent), at most once. */
  const publish = async (key: string, data: Uint8Array, previous?: number, h?: ReturnType<typeof ttlHeaders>) => {
    const subject = `$KV.${bucket}.${key}`;
    const msgID = randomUUID();
    const expect = previous === undefined ? undefined : { lastSubjectSequence: previous };
    let attempts = 0;
    try {
      return await retryLeaderless(async () => (attempts++, (await jsPublish(subject, data, { msgID, expect, headers: h })).seq), true, budgetMs);
    } catch (err) {
      // A retry meeting its own stored write as a conflict (see the header).
      const seq = attempts > 1 && isConflict(err) ? await landed(subject, msgID) : undefined;
      if (seq === undefined) throw err;
      return seq;
    }
  };
  /** The revision of the key's last message when it is the write `msgID`, else undefined. */
  const landed = async (subject: string, msgID: string) => {
    const jsm = await js.jetstreamManager(false);
    const last = await retryLeaderless(() => jsm.streams.getMessage(`KV_${bucket}`, { last_by_subj: subject }), true, budgetMs).catch(() => null);
    return last?.header.get("Nats-Msg-Id") === msgID ? last.seq : undefined;
  };
  const filterSubject = (within?: Within) => within && { subject: `$KV.${bucket}.${within.filter}` };
  const write = (key: string, data: Uint8Array, previous?: number, opts?: KvWriteOptions & { within?: Within }) =>
    publish(key, data, opts?.within?.last ?? previous, ttlHeaders(opts?.ttlSeconds, {}, filterSubject(opts?.within)));
  const overrides: Partial<TtlKV> = {
    ttlWrites: true,
    get: (key, opts) => retryLeaderless(() => kv.get(key, opts), true, budgetMs),
    put: (key, data, opts) => write(key, data, opts?.previousSeq, opts),
    // nats.js's delete returns nothing; this one returns the marker's revision.
    delete: ((key: string, opts?: { previousSeq?: number; within?: Within }) =>
      publish(key, Empty, opts?.within?.last ?? opts?.previousSeq, ttlHeaders(markerTtlSeconds, { "KV-Operation": "DEL" }, filterSubject(opts?.within)))) as unknown as TtlKV["delete"],
    update: (key, data, version, opts) => write(key, data, version, opts),
    async create(key, data, opts) {
      try {
        return await write(key, data, 0, opts);
      } catch (err) {
        // The key exists, or holds a marker that create may overwrite.
        if (!isConflict(err)) throw err;
        const cur = await retryLeaderless(() => kv.get(key), true, budgetMs);
        if (!cur || !isMarker(cur)) throw err;
        return write(key, data, cur.revision, opts);
      }
    },
  };
  return new Proxy(kv, {
    get(target, prop, receiver) {
      if (typeof prop === "string" && prop in overrides) return overrides[prop as keyof TtlKV];
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as TtlKV;
}

/**
 * Opens every KV bucket, creating an absent one, and brings each one's replicas and limits
 * (storage.ts) in line with configuration: opening a bucket alone never changes it, so an
 * existing deployment gets new limits at its next start.
 */
/**
 * `publish`: how writes are published (runtime/js-publish.ts; nats.js's `js.publish` when not
 * given).
 */
export async function provisionBuckets(js: JetStreamClient, config: Config, publish?: JsPublish): Promise<Buckets> {
  const jsm = await js.jetstreamManager();
  const all = bucketLimits(config);
  const markerTtl = config.storage.marker_ttl_seconds;
  const entries = await Promise.all(
    (Object.keys(BUCKETS) as BucketKind[]).map(async (k) => {
      const name = BUCKETS[k];
      const want = { ...limitFields(config, all[k]), allow_msg_ttl: true, subject_delete_marker_ttl: nanos(markerTtl * 1000) };
      // A new bucket: the stream nats.js would make for `views.kv(name, { history: 1 })`, with our fields.
      await provision(jsm, `KV_${name}`, want, all[k], {
        subjects: [`$KV.${name}.>`],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        max_msgs_per_subject: 1,
        allow_rollup_hdrs: true,
        allow_direct: true,
        duplicate_window: DUPLICATE_WINDOW,
      });
      const kv = await js.views.kv(name);
      return [k, leaderTolerant(kv, js, name, LEADERLESS_RETRY_MS, markerTtl, publish)] as const;
    }),
  );
  return Object.fromEntries(entries) as Buckets;
}
