// Write limits: memory adds and forgets, context resets and persona selections, definitions
// and deletions count against a per-user and a per-channel budget per minute
// (ROSEY_LIMIT_USER_WRITES_PER_MINUTE, ROSEY_LIMIT_CHANNEL_WRITES_PER_MINUTE; 0 turns one
// off), so a flood of writes is refused as `rate_limited` with `retry_after` like a flood of
// chats.
//
// Window: a sliding minute, estimated from two fixed-minute counters — the previous minute's
// count weighted by how much of it still lies in the last 60 s, plus this minute's. Keys
// `w.u.<user>.<minute>` and `w.c.<channel>.<minute>` in the limits bucket hold {n}; each is
// counted by compare-and-set (exact across instances) and expires by itself two minutes
// after its last write, so the bucket holds at most two keys per name written in the last
// two minutes.
import type { Clock, WriteLimiter } from "../context/types";
import { encodeName, key } from "../keys";
import { isKvConflict, type Kv } from "../kv";
import { RoseyError } from "../errors";

const MINUTE_MS = 60_000;
/** A counter outlives the minute after it, which still weighs it. */
const COUNTER_TTL_SECONDS = 120;
/** Compare-and-set attempts before a write is refused as contended. */
const MAX_TRIES = 20;

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Who a write counts against: the user and the channel it names, either optional; `admin`
 * when it arrived on an admin subject (only then can an exempt name skip the limits under
 * exempt_admin_only).
 */
export type WriteSubject = Parameters<WriteLimiter["admit"]>[0];

export interface WriteLimitsConfig {
  user_writes_per_minute: number;
  channel_writes_per_minute: number;
  exempt_users: string[];
  exempt_channels: string[];
  exempt_admin_only: boolean;
}

/** Seconds from `elapsedMs` into the minute until `prev` and `cur` leave room for one more under `limit`. */
export function secondsUntilRoom(prev: number, cur: number, limit: number, elapsedMs: number): number {
  for (let s = 1; s <= 120; s++) {
    const t = elapsedMs + s * 1000;
    // After the minute ends, this minute's count becomes the previous one, and so on.
    const estimate =
      t < MINUTE_MS ? prev * (1 - t / MINUTE_MS) + cur : t < 2 * MINUTE_MS ? cur * (1 - (t - MINUTE_MS) / MINUTE_MS) : 0;
    if (estimate + 1 <= limit) return s;
  }
  return 120;
}

/** Counts one write, or throws rate_limited (with retry_after) without counting it. */
export function createWriteLimiter(opts: { kv: Kv; config: WriteLimitsConfig; clock: Clock }): WriteLimiter {
  const { kv, config: c, clock } = opts;
  const exemptUsers = new Set(c.exempt_users);
  const exemptChannels = new Set(c.exempt_channels);

  const read = async (k: string) => {
    const e = await kv.get(k);
    return { n: e ? (JSON.parse(dec.decode(e.value)) as { n: number }).n : 0, revision: e?.revision };
  };

  /** Adds `delta` to the name's counter of this minute if the sliding estimate allows; the refusal otherwise. */
  async function count(kind: "u" | "c", name: string, limit: number, delta: 1 | -1): Promise<RoseyError | null> {
    for (let i = 0; i < MAX_TRIES; i++) {
      const now = clock.now();
      const minute = Math.floor(now / MINUTE_MS);
      const elapsed = now - minute * MINUTE_MS;
      const curKey = key("w", kind, encodeName(name), minute);
      const [prev, cur] = await Promise.all([read(key("w", kind, encodeName(name), minute - 1)), read(curKey)]);
      if (delta > 0 && prev.n * (1 - elapsed / MINUTE_MS) + cur.n + 1 > limit) {
        const retry_after = secondsUntilRoom(prev.n, cur.n, limit, elapsed);
        const who = kind === "u" ? "user" : "channel";
        return new RoseyError("rate_limited", `Too many writes for this ${who}: ${limit} per minute; try again in ${retry_after} s`, { retry_after });
      }
      const value = enc.encode(JSON.stringify({ n: Math.max(0, cur.n + delta) }));
      try {
        if (cur.revision === undefined) await kv.create(curKey, value, { ttlSeconds: COUNTER_TTL_SECONDS });
        else await kv.update(curKey, value, cur.revision, { ttlSeconds: COUNTER_TTL_SECONDS });
        return null;
      } catch (err) {
        if (!isKvConflict(err)) throw err;
      }
    }
    return new RoseyError("rate_limited", "Too many concurrent writes; try again", { retry_after: 1 });
  }

  const exempt = (set: Set<string>, name: string, admin: boolean) => set.has(name) && (admin || !c.exempt_admin_only);

  return {
    async admit(w) {
      // An exempt user's writes skip both limits, as an exempt user's chats do.
      const userExempt = w.user !== undefined && exempt(exemptUsers, w.user, w.admin);
      const byUser = w.user !== undefined && c.user_writes_per_minute > 0 && !userExempt;
      const byChannel =
        w.channel !== undefined && c.channel_writes_per_minute > 0 && !userExempt && !exempt(exemptChannels, w.channel, w.admin);
      if (byUser) {
        const refused = await count("u", w.user!, c.user_writes_per_minute, 1);
        if (refused) throw refused;
      }
      if (byChannel) {
        const refused = await count("c", w.channel!, c.channel_writes_per_minute, 1);
        if (refused) {
          // The write is not made: take back what the user was counted.
          if (byUser) await count("u", w.user!, c.user_writes_per_minute, -1);
          throw refused;
        }
      }
    },
  };
}
