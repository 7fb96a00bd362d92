// Creates the KV buckets and the events stream, or brings an existing one's replicas and
// retention in line with configuration. Safe to run from every instance at every start.
//
// The bucket handles it returns ride out a JetStream leader election. When a cluster node
// dies, each stream it led has no leader for a few seconds; meanwhile a write to it (and a
// read that needs the leader) comes back at once as "503 no responders". Without a retry,
// every request in that window fails with `internal` even though the cluster heals by
// itself. A 503 means no server took the message, so nothing was written and retrying is
// safe. A write that timed out, though, may have been stored: retried as is, the CAS would
// conflict with itself, re-read and count twice. So compare-and-set writes (create, update)
// carry a Nats-Msg-Id made once per write: the stream's dedupe check runs before its
// expected-revision check, so a retry of a stored write is answered "duplicate" with the
// original revision, and the write lands at most once. Plain puts get the same treatment;
// deletes are retried on 503 only.
import { randomUUID } from "node:crypto";
import { RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager, type KV } from "nats";
import type { Config } from "../lib/config";

export const BUCKETS = {
  limits: "ROSEY_LLM_LIMITS",
  usage: "ROSEY_LLM_USAGE",
  personas: "ROSEY_LLM_PERSONAS",
  memory: "ROSEY_LLM_MEMORY",
} as const;

export const EVENTS_STREAM = "ROSEY_LLM_EVENTS";

const DAY_MS = 24 * 3600 * 1000;

/** Key time-to-live per bucket: counters only matter for their window; state is kept. */
export const TTL_MS: Record<keyof typeof BUCKETS, number> = {
  limits: 3 * DAY_MS,
  usage: 400 * DAY_MS,
  personas: 0,
  memory: 0,
};

export type Buckets = Record<keyof typeof BUCKETS, KV>;

const nanos = (ms: number) => ms * 1_000_000;

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

/** Ensures the events stream exists with the configured replicas and max age. */
export async function provisionStream(jsm: JetStreamManager, config: Config): Promise<void> {
  const want = {
    name: EVENTS_STREAM,
    subjects: [`${config.subject_prefix}.event.llm.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    num_replicas: config.replicas,
    max_age: nanos(config.events.max_age_days * DAY_MS),
    duplicate_window: nanos(2 * 60 * 1000),
  };
  try {
    const info = await jsm.streams.info(EVENTS_STREAM);
    const c = info.config;
    if (
      c.num_replicas !== want.num_replicas ||
      c.max_age !== want.max_age ||
      c.subjects.join() !== want.subjects.join()
    ) {
      await jsm.streams.update(EVENTS_STREAM, { ...c, ...want });
      if (c.num_replicas !== want.num_replicas) await waitForReplicas(jsm, EVENTS_STREAM, want.num_replicas);
    }
  } catch (err) {
    if (!/stream not found/i.test((err as Error).message)) throw err;
    await jsm.streams.add(want);
  }
}

/** How long a KV operation keeps retrying while its stream has no leader. */
export const LEADERLESS_RETRY_MS = 15_000;

/** True when no server answered a request: the subject has no responder (no stream leader). */
export function isNoResponders(err: unknown): boolean {
  const e = err as { code?: string; api_error?: { code?: number } } | null;
  return e?.code === "503" || e?.api_error?.code === 503;
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

/**
 * A KV handle whose operations wait out a leader election, with compare-and-set writes that
 * are safe to retry after a timeout (see the header). Keys are used as given: our keys are
 * already valid subject tokens (lib/keys) and the buckets are not mirrors, so a key's
 * subject is `$KV.<bucket>.<key>`.
 */
export function leaderTolerant(kv: KV, js: JetStreamClient, bucket: string, budgetMs = LEADERLESS_RETRY_MS): KV {
  /** Writes `data` (if the key's revision is still `previous`, 0 = absent), at most once. */
  const write = (key: string, data: Uint8Array, previous?: number) => {
    const msgID = randomUUID();
    const expect = previous === undefined ? undefined : { lastSubjectSequence: previous };
    return retryLeaderless(async () => (await js.publish(`$KV.${bucket}.${key}`, data, { msgID, expect })).seq, true, budgetMs);
  };
  const overrides: Partial<KV> = {
    get: (key, opts) => retryLeaderless(() => kv.get(key, opts), true, budgetMs),
    put: (key, data, opts) =>
      opts && Object.keys(opts).length > 0 ? retryLeaderless(() => kv.put(key, data, opts), false, budgetMs) : write(key, data as Uint8Array),
    delete: (key, opts) => retryLeaderless(() => kv.delete(key, opts), false, budgetMs),
    update: (key, data, version) => write(key, data as Uint8Array, version),
    async create(key, data) {
      try {
        return await write(key, data as Uint8Array, 0);
      } catch (err) {
        // The key exists, or holds a delete marker that create may overwrite: the client's
        // own create knows that case.
        if ((err as { api_error?: { err_code?: number } }).api_error?.err_code !== 10071) throw err;
        return retryLeaderless(() => kv.create(key, data), false, budgetMs);
      }
    },
  };
  return new Proxy(kv, {
    get(target, prop, receiver) {
      if (typeof prop === "string" && prop in overrides) return overrides[prop as keyof KV];
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * Opens (creating when absent) every KV bucket with the configured replicas, and raises or
 * lowers the replicas of an existing bucket to the configured number (opening a bucket
 * alone never changes it).
 */
export async function provisionBuckets(js: JetStreamClient, config: Config): Promise<Buckets> {
  const jsm = await js.jetstreamManager();
  const entries = await Promise.all(
    (Object.keys(BUCKETS) as Array<keyof typeof BUCKETS>).map(async (k) => {
      const kv = await js.views.kv(BUCKETS[k], {
        history: 1,
        replicas: config.replicas,
        ttl: TTL_MS[k],
        storage: StorageType.File,
      });
      const stream = `KV_${BUCKETS[k]}`;
      const info = await jsm.streams.info(stream);
      if (info.config.num_replicas !== config.replicas) {
        await jsm.streams.update(stream, { ...info.config, num_replicas: config.replicas });
        await waitForReplicas(jsm, stream, config.replicas);
      }
      return [k, leaderTolerant(kv, js, BUCKETS[k])] as const;
    }),
  );
  return Object.fromEntries(entries) as Buckets;
}
