// Today's usage (requests and tokens per calendar day in config.timezone), read from the
// limiter's documents: every settled call records itself there (lib/limiter, settle).
//   a user      u.<user>          its day's usage, written before the call's reply;
//   a channel   c.<channel>       its day's usage, written within 1.5 s of the call
//                                 (plus what this instance has not written yet);
//   the service i.<day>.<instance> one document per instance, written before each reply;
//                                 the total is their sum (one key listing, one read each).
import type { Config } from "../config";
import type { Clock, Logger, Usage, UsageTotals } from "../context/types";
import { checkedKv, getJson, type Kv } from "../kv";
import { calendar, channelKey, docSchema, instancesOf, userKey, type ChannelDoc, type PendingUsage, type Spend, type UserDoc } from "../limiter";

export interface UsageOptions {
  /** The ROSEY_LLM_LIMITS bucket. */
  kv: Kv;
  config: Config;
  clock: Clock;
  log: Logger;
  /** This instance's channel usage not yet written (RuntimeLimiter.pendingUsage). */
  pending?: PendingUsage;
}

const none = (): Spend => ({ q: 0, u: 0, p: {} });

function totals(...parts: Array<Spend | undefined>): UsageTotals {
  const by: Record<string, { requests: number; tokens: number }> = {};
  let requests = 0;
  let tokens = 0;
  for (const s of parts) {
    if (!s) continue;
    requests += s.q;
    tokens += s.u;
    for (const [p, [q, u]] of Object.entries(s.p)) {
      const cur = (by[p] ??= { requests: 0, tokens: 0 });
      cur.requests += q;
      cur.tokens += u;
    }
  }
  return { requests_today: requests, tokens_today: tokens, by_provider: by };
}

/** Builds the usage reader of one instance. */
export function createUsage(opts: UsageOptions): Usage {
  const { config, clock } = opts;
  // A stored document that is not of its key's shape reads as absent (and is logged once).
  const kv = checkedKv(opts.kv, docSchema, opts.log);
  const cal = calendar(config.timezone);

  return {
    async get(q): Promise<UsageTotals> {
      const day = cal.date(clock.now());
      // A user's figures when a user is named, else the channel's, else the service's.
      if (q.user !== undefined) {
        const d = (await getJson<UserDoc>(kv, userKey(q.user)))?.value.d;
        return totals(d?.w === day ? d : none());
      }
      if (q.channel !== undefined) {
        const d = (await getJson<ChannelDoc>(kv, channelKey(q.channel)))?.value.d;
        return totals(d?.w === day ? d : none(), opts.pending?.(q.channel));
      }
      const keys = await kv.keys(instancesOf(day));
      const docs = await Promise.all(keys.map((k) => getJson<Spend>(kv, k)));
      return totals(...docs.map((d) => d?.value));
    },
  };
}
