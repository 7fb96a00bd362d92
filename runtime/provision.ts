// Creates the KV buckets and the events stream, or brings an existing one's replicas and
// retention in line with configuration. Safe to run from every instance at every start.
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

/** Opens (creating when absent) every KV bucket with the configured replicas. */
export async function provisionBuckets(js: JetStreamClient, config: Config): Promise<Buckets> {
  const entries = await Promise.all(
    (Object.keys(BUCKETS) as Array<keyof typeof BUCKETS>).map(async (k) => {
      const kv = await js.views.kv(BUCKETS[k], {
        history: 1,
        replicas: config.replicas,
        ttl: TTL_MS[k],
        storage: StorageType.File,
      });
      return [k, kv] as const;
    }),
  );
  return Object.fromEntries(entries) as Buckets;
}
