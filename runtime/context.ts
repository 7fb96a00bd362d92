// Builds the Ctx handlers receive from a NATS connection: the host services (events,
// providers, limiter, usage, memory, personas) over JetStream KV and the events stream.
// Synchronous, and reads nothing at start: memory and personas read the channels they are
// asked about when asked (lib/kv/group-cache.ts), so an instance is ready as soon as it is
// built, however much the buckets hold (runtime/service.ts relies on this). The move of
// persona selections stored by earlier versions runs in the background (lib/personas/move.ts).
import type { JetStreamClient, JetStreamManager, NatsConnection } from "nats";
import type { Config } from "../lib/config";
import type { Clock, Ctx, InstanceInfo, Logger } from "../lib/context";
import { createEvents } from "../lib/events";
import { createLimiter, createWriteLimiter, LIMITS_TTL_MS } from "../lib/limiter";
import { summarizeHistory } from "../lib/llm";
import { createMemory } from "../lib/memory";
import { createPersonas } from "../lib/personas";
import { createEmbedder, createProviders } from "../lib/providers";
import { createUsage } from "../lib/usage";
import type { JsPublish } from "./js-publish";
import { natsKv } from "./kv";
import { streamReads } from "./kv-reads";
import { markerRetirer } from "./markers";
import { BUCKETS, retryLeaderless, type Buckets } from "./provision";

/**
 * The configuration chat, complete and summarize are limited by. Exempt names are claims any
 * caller can make; with `exempt_admin_only` none of them is exempt there (those endpoints are
 * plugin subjects), and exemptions count only for writes on the admin subjects.
 */
export function chatLimitsConfig(config: Config): Config {
  if (!config.limits.exempt_admin_only) return config;
  return { ...config, limits: { ...config.limits, exempt_users: [], exempt_channels: [] } };
}

export interface ContextOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  /** How events are published (runtime/js-publish.ts); nats.js's `js.publish` when not given. */
  publish?: JsPublish;
  jsm: JetStreamManager;
  buckets: Buckets;
  config: Config;
  log: Logger;
  instance: InstanceInfo;
  clock?: Clock;
  fetch?: typeof fetch;
}

/** The shared context of one runtime instance, and a close function that finishes its background work. */
export function createContext(opts: ContextOptions): { ctx: Ctx; close(): Promise<void> } {
  const { nc, js, jsm, buckets, config, log, instance } = opts;
  const publish: JsPublish = opts.publish ?? ((subject, data, o) => js.publish(subject, data, o));
  const clock = opts.clock ?? { now: () => Date.now() };
  const events = createEvents({
    prefix: config.subject_prefix,
    service: instance.service,
    instance: instance.id,
    clock,
    log,
    // Rides out a stream leader election (no responders) instead of dropping the event;
    // the Nats-Msg-Id makes a retry after a lost acknowledgement safe.
    sink: async (subject, data, msgId) => {
      await retryLeaderless(() => publish(subject, data, { msgID: msgId }), true);
    },
  });
  const providers = createProviders(config, { log, clock, fetch: opts.fetch });
  // Set below; the memory's summarizer needs the whole context, and runs only once it exists.
  let ctx!: Ctx;
  // Memory and personas read groups of keys (a channel's, the definitions) straight from the
  // bucket streams; markers of older versions met there are replaced by expiring ones.
  const grouped = (name: keyof typeof BUCKETS) => ({
    ...natsKv(buckets[name], BUCKETS[name], jsm),
    ...streamReads(nc, jsm, BUCKETS[name], config.replicas > 1, markerRetirer(buckets[name], BUCKETS[name], log)),
  });
  const embeddings = createEmbedder(config, { log, clock, fetch: opts.fetch });
  const memoryKv = grouped("memory");
  const memory = createMemory({
    kv: memoryKv,
    config,
    clock,
    events,
    providers,
    log,
    instance: instance.id,
    // History summaries are model calls like any other: admitted, counted, published.
    summarizer: (req) => summarizeHistory(ctx, req),
    embedder: embeddings,
  });
  // Limits, quotas, the global budget and today's usage share the limits bucket: a call's
  // accounting and its usage are the same writes. A channel's document lies among the
  // channel's memory keys, so that its admission proves the channel's memory (lib/memory/
  // limits-doc.ts). Finished days go to the usage bucket, found by walks of the limits
  // bucket and of the channels' documents in the memory bucket in the background (scan).
  const limits = memory.channelLimits(natsKv(buckets.limits, BUCKETS.limits, jsm), LIMITS_TTL_MS / 1000);
  const history = natsKv(buckets.usage, BUCKETS.usage, jsm);
  const { scan } = streamReads(nc, jsm, BUCKETS.limits, config.replicas > 1);
  const limiter = createLimiter({
    kv: { ...limits, scan },
    channelScan: memoryKv.scan,
    config: chatLimitsConfig(config),
    clock,
    events,
    log,
    instance: instance.id,
    history,
  });
  const writes = createWriteLimiter({ kv: limits, config: config.limits, clock });
  const usage = createUsage({ kv: limits, config, clock, log, pending: limiter.pendingUsage });
  // A channel's persona selection is kept with its memory: a chat's one read brings both.
  const personas = createPersonas({ kv: grouped("personas"), selections: memory.selections, config, log, clock });
  personas.move.start();
  ctx = { config, clock, log, instance, events, providers, limiter, writes, usage, memory, personas, embeddings };
  return {
    ctx,
    async close() {
      // The move of selections stops; summaries and touches in progress finish before the
      // caches go and events flush.
      await personas.close();
      await memory.settled();
      memory.close();
      // Pending channel usage is written; the lease's spend moves to the day's total.
      await limiter.close();
      await events.flush();
    },
  };
}
