// Creates the KV buckets and the events stream, or brings an existing one's replicas and
// retention in line with configuration. Safe to run from every instance at every start.
//
// The bucket handles it returns ride out a JetStream leader election. When a cluster node
// dies, each stream it led has no leader for a few seconds; meanwhile a write to it (and a
// read that needs the leader) comes back at once as "503 no responders". Without a retry,
// every request in that window fails with `internal` even though the cluster heals by
// itself. A 503 means no server took the message, so nothing was written and retrying is
// safe for writes too; a timeout is retried only for reads, because a write that timed out
// may have been stored (a retried CAS would then conflict, re-read and count twice).
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
const TTL_MS: Record<keyof typeof BUCKETS, number> = {
  limits: 3 * DAY_MS,
  usage: 400 * DAY_MS,
  personas: 0,
  memory: 0,
};

export type Buckets = Record<keyof typeof BUCKETS, KV>;

const nanos = (ms: number) => ms * 1_000_000;

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

const READS = new Set(["get"]);
const WRITES = new Set(["put", "create", "update", "delete", "purge"]);

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

/** A KV handle whose reads and writes wait out a leader election (see the header). */
export function leaderTolerant(kv: KV, budgetMs = LEADERLESS_RETRY_MS): KV {
  return new Proxy(kv, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      const fn = v as (...a: unknown[]) => Promise<unknown>;
      const name = String(prop);
      if (READS.has(name) || WRITES.has(name)) {
        return (...args: unknown[]) => retryLeaderless(() => fn.apply(target, args), READS.has(name), budgetMs);
      }
      return fn.bind(target);
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
      }
      return [k, leaderTolerant(kv)] as const;
    }),
  );
  return Object.fromEntries(entries) as Buckets;
}
