// Builds the Ctx handlers receive from a NATS connection: the host services (events,
// providers, limiter, usage, memory, personas) over JetStream KV and the events stream.
import type { JetStreamClient, JetStreamManager } from "nats";
import type { Config } from "../lib/config";
import type { Clock, Ctx, InstanceInfo, Logger } from "../lib/context";
import { createEvents } from "../lib/events";
import { createLimiter, createWriteLimiter } from "../lib/limiter";
import { createMemory } from "../lib/memory";
import { createPersonas } from "../lib/personas";
import { createProviders } from "../lib/providers";
import { createUsage } from "../lib/usage";
import { natsKv } from "./kv";
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
  js: JetStreamClient;
  jsm: JetStreamManager;
  buckets: Buckets;
  config: Config;
  log: Logger;
  instance: InstanceInfo;
  clock?: Clock;
  fetch?: typeof fetch;
}

/** The shared context of one runtime instance, and a close function that finishes its background work. */
export async function createContext(opts: ContextOptions): Promise<{ ctx: Ctx; close(): Promise<void> }> {
  const { js, jsm, buckets, config, log, instance } = opts;
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
      await retryLeaderless(() => js.publish(subject, data, { msgID: msgId }), true);
    },
  });
  const providers = createProviders(config, { log, clock, fetch: opts.fetch });
  const limiter = createLimiter({ kv: natsKv(buckets.limits, BUCKETS.limits, jsm), config: chatLimitsConfig(config), clock, events, log });
  const writes = createWriteLimiter({ kv: natsKv(buckets.limits, BUCKETS.limits, jsm), config: config.limits, clock });
  const usage = createUsage({ kv: natsKv(buckets.usage, BUCKETS.usage, jsm), config, clock, log, instance: instance.id });
  const personas = createPersonas({ kv: natsKv(buckets.personas, BUCKETS.personas, jsm), config, log });
  const memory = createMemory({
    kv: natsKv(buckets.memory, BUCKETS.memory, jsm),
    config,
    clock,
    events,
    providers,
    log,
    instance: instance.id,
  });
  // The memory index is loaded from the bucket before the first request is taken.
  await Promise.all([memory.ready(), personas.ready()]);
  const ctx: Ctx = { config, clock, log, instance, events, providers, limiter, writes, usage, memory, personas };
  return {
    ctx,
    async close() {
      // Summaries and touches in progress finish before the watch stops and events flush.
      await memory.settled();
      memory.close();
      personas.close();
      // Unused global budget goes back; batched usage counters are written.
      await Promise.all([limiter.close(), usage.flush()]);
      await events.flush();
    },
  };
}
