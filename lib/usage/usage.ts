// Usage counters on the ROSEY_LLM_USAGE bucket: requests and tokens per calendar day
// (config.timezone) per user, per channel, per provider and for the whole service.
//
// Keys (names base64url-encoded, day = local date YYYY-MM-DD):
//   d.<day>.u.<user>       one user's day          {requests, tokens, by_provider}
//   d.<day>.c.<channel>    one channel's day       same
//   d.<day>.i.<instance>   one instance's share of the service's day, by provider
// A user's or channel's key is only as hot as that user or channel, which the limiter
// already caps, so it is one CAS-updated document. The service-wide total is what every
// request touches: instead of one hot key, each instance adds to its own shard, and a read
// sums the shards of the day (one key listing plus one concurrent get per instance).
// Within an instance, writes to one key are coalesced: while one CAS is in flight the
// next records accumulate and go out together, so a shard sees at most one writer at a
// time and a burst costs a handful of writes. record() resolves once its delta is stored.
// Each write also remembers the document and revision it stored (for the most recently
// written keys), so the next write of the key is a compare-and-set on that revision with
// no read first: the instance's own shard has no other writer and never needs one, and a
// user's or channel's key needs one only when another instance wrote it since (the
// update then conflicts and the write falls back to read-modify-write). A key that met
// another instance's write is not written from memory for the next few seconds: on a busy
// channel every instance writes, memory is mostly stale, and an instance writing from it
// (one round trip) would leave a rival that reads and writes (two) no gap to get in.
import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { Config } from "../config";
import type { Clock, Logger, Usage, UsageRecord, UsageTotals } from "../context/types";
import { encodeName, key } from "../keys";
import { casUpdate, checkedKv, getJson, isKvConflict, type Kv } from "../kv";
import { calendar } from "../limiter/calendar";

export interface UsageOptions {
  /** The ROSEY_LLM_USAGE bucket; its max age is how long daily history is kept. */
  kv: Kv;
  config: Config;
  clock: Clock;
  log: Logger;
  /** This instance's id, naming its shard of the service totals (default: a random id). */
  instance?: string;
  /** How many keys' last written documents to remember (default 4096). */
  cacheKeys?: number;
  /** How long a key that another instance wrote under us is read before each write (ms, default 2000). */
  contendedMs?: number;
}

const Counts = z.object({ requests: z.number(), tokens: z.number() });

/** Stored counters of one key (a value not of this shape reads as absent: lib/kv/checked.ts). */
export const UsageDoc = Counts.extend({ by_provider: z.record(z.string(), Counts) });
export type UsageDoc = z.infer<typeof UsageDoc>;

/** The usage service the runtime builds: the Ctx part plus a flush for draining. */
export interface RuntimeUsage extends Usage {
  /** Waits until every recorded delta is stored. */
  flush(): Promise<void>;
}

const enc = new TextEncoder();

const empty = (): UsageDoc => ({ requests: 0, tokens: 0, by_provider: {} });

/** Adds `b` into `a` (mutating `a`) and returns it. */
function add(a: UsageDoc, b: UsageDoc): UsageDoc {
  a.requests += b.requests;
  a.tokens += b.tokens;
  for (const [p, v] of Object.entries(b.by_provider ?? {})) {
    const cur = (a.by_provider[p] ??= { requests: 0, tokens: 0 });
    cur.requests += v.requests;
    cur.tokens += v.tokens;
  }
  return a;
}

interface Pending {
  delta: UsageDoc;
  waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }>;
}

/** Key prefix of one day. */
const dayKey = (day: string, ...rest: string[]) => key("d", day, ...rest);

/** Builds the usage counters of one instance. */
export function createUsage(opts: UsageOptions): RuntimeUsage {
  const { config, clock, log } = opts;
  const kv = checkedKv(opts.kv, () => UsageDoc, log);
  const cal = calendar(config.timezone);
  const shard = encodeName(opts.instance ?? randomUUID());
  const pending = new Map<string, Pending>();
  const running = new Map<string, Promise<void>>();
  // Last document and revision written per key; Map order is recency (touched keys move last).
  const written = new Map<string, { doc: UsageDoc; revision: number }>();
  const cacheKeys = opts.cacheKeys ?? 4096;
  const contendedMs = opts.contendedMs ?? 2_000;
  // When a key last met another instance's write (Date.now()); only read while recent.
  const contended = new Map<string, number>();
  const conflicted = (k: string) => {
    written.delete(k);
    contended.delete(k);
    contended.set(k, Date.now());
    if (contended.size > cacheKeys) contended.delete(contended.keys().next().value!);
  };
  const remember = (k: string, doc: UsageDoc, revision: number) => {
    const at = contended.get(k);
    if (at !== undefined && Date.now() - at < contendedMs) return;
    written.delete(k);
    written.set(k, { doc, revision });
    if (written.size > cacheKeys) written.delete(written.keys().next().value!);
  };

  /** Stores `delta` into `k`: straight from the remembered document if we have one, else read-modify-write. */
  const store = async (k: string, delta: UsageDoc) => {
    const last = written.get(k);
    if (last) {
      const doc = add(add(empty(), last.doc), delta);
      try {
        remember(k, doc, await kv.update(k, enc.encode(JSON.stringify(doc)), last.revision));
        return;
      } catch (err) {
        if (!isKvConflict(err)) {
          // The write may or may not have landed: forget the key and fail.
          written.delete(k);
          throw err;
        }
        // Another instance wrote the key since: read and retry below.
        conflicted(k);
      }
    }
    const out = await casUpdate<UsageDoc, null>(kv, k, (cur) => ({ value: add(add(empty(), cur ?? empty()), delta), result: null }));
    if (out.retries > 0) conflicted(k);
    remember(k, out.value!, out.revision);
  };

  /** Writes the accumulated delta of `k` until none is left; one loop per key at a time. */
  const drain = async (k: string) => {
    for (let p = pending.get(k); p; p = pending.get(k)) {
      pending.delete(k);
      try {
        await store(k, p.delta);
        p.waiters.forEach((w) => w.resolve());
      } catch (err) {
        written.delete(k);
        log.error("usage write failed", { key: k, error: (err as Error).message });
        p.waiters.forEach((w) => w.reject(err));
      }
    }
    running.delete(k);
  };

  const enqueue = (k: string, delta: UsageDoc) =>
    new Promise<void>((resolve, reject) => {
      const p = pending.get(k) ?? { delta: empty(), waiters: [] };
      add(p.delta, delta);
      p.waiters.push({ resolve, reject });
      pending.set(k, p);
      if (!running.has(k)) running.set(k, drain(k));
    });

  return {
    async record(rec: UsageRecord) {
      const day = cal.date(clock.now());
      const tokens = Math.max(0, Math.round(rec.tokens));
      const delta = (): UsageDoc => ({ requests: 1, tokens, by_provider: { [rec.provider]: { requests: 1, tokens } } });
      const writes = [enqueue(dayKey(day, "i", shard), delta())];
      if (rec.user !== undefined) writes.push(enqueue(dayKey(day, "u", encodeName(rec.user)), delta()));
      if (rec.channel !== undefined) writes.push(enqueue(dayKey(day, "c", encodeName(rec.channel)), delta()));
      await Promise.all(writes);
    },

    async get(q): Promise<UsageTotals> {
      const day = cal.date(clock.now());
      // A user's figures when a user is named, else the channel's, else the service's.
      if (q.user !== undefined || q.channel !== undefined) {
        const k = q.user !== undefined ? dayKey(day, "u", encodeName(q.user)) : dayKey(day, "c", encodeName(q.channel!));
        const doc = (await getJson<UsageDoc>(kv, k))?.value ?? empty();
        return { requests_today: doc.requests, tokens_today: doc.tokens, by_provider: doc.by_provider };
      }
      const keys = await kv.keys(`${dayKey(day, "i")}.*`);
      const docs = await Promise.all(keys.map((k) => getJson<UsageDoc>(kv, k)));
      const total = docs.reduce((acc, d) => (d ? add(acc, d.value) : acc), empty());
      return { requests_today: total.requests, tokens_today: total.tokens, by_provider: total.by_provider };
    },

    async flush() {
      while (running.size > 0) await Promise.all([...running.values()]);
    },
  };
}
