// Request limits and token quotas on the ROSEY_LLM_LIMITS bucket, exact across instances.
//
// Algorithm: fixed-window counters with compare-and-set.
//   - `u.<user>` holds ALL of one user's windows (minute, hour, calendar day, tokens of the
//     day), so one CAS admits against every user limit at once. `c.<channel>` holds the
//     channel's hour window. `g.<day>` is the global token budget, handed out in leases
//     (lease.ts). Names are base64url-encoded, so `a` and `a.b`, `>` or `*` are separate
//     keys, and one hot user or channel only contends with itself.
//   - A window is named by its start (calendar.ts); a counter whose name is not the current
//     window's counts as 0, so windows roll over without cleanup writes, and idle documents
//     expire with the bucket's max age (LIMITS_TTL_MS).
//
// Exactness: every admission is a CAS write of `n + 1` against the revision of the document
// it decided on, after checking `n + 1 <= limit` on that same document. JetStream applies
// writes to a key in order and rejects one whose expected revision is stale, so the
// admissions of one window form a chain of revisions, each one seeing the count left by the
// previous one: the chain can hold at most `limit` increments, whatever the number of
// instances or connections, and a refusal never writes. With limit L and more than L
// racers, every racer keeps retrying (re-read, re-decide) until it has either written or
// read a count of L, so exactly L are admitted. Requests of one instance for the same key
// are group-committed (cas.ts): their checks run one after another on the same document,
// each on the count the previous left, and go out as one CAS, so the argument holds per
// batch exactly as per request — and a hot key sees one writer per instance instead of one
// per request.
//
// Remembered documents: the document a request decides on need not be a read of its own.
// The batcher keeps, per key, the last document and revision this instance wrote or read;
// admit starts from it for the user's document, settle and release always (a warm user
// key costs no read at all). A channel's document is read on every admission, and so is a
// user's that another instance has written under us in the last seconds (cas.ts): those
// are shared keys, where memory is mostly stale and writing from it would let one
// instance crowd the others out. A remembered document may be stale — another instance
// wrote since — but the argument above only needs the write to be a CAS on the revision
// of the document decided on: a stale document makes the CAS fail, and the retry
// re-reads, so a stale cache can never admit more. The other direction is
// guarded explicitly: a refusal (or any decision not to write) is taken only on a document
// observed after the request began; one decided on an older remembered document is
// re-checked on a fresh read first, so a stale cache (e.g. counts another instance has
// since released or undone) never refuses wrongly either.
//
// A request with a user and a channel touches two keys: both documents are fetched (or
// taken from memory) concurrently and checked first (a full window refuses with no write
// at all), then both written concurrently; if one of them lost its race to the limit
// meanwhile, the other write is undone by a decrementing CAS. Over-admission is
// impossible; the only imprecision is that, for the few milliseconds before such an undo,
// a racing request on the undone window may see one count too many — it can only be
// refused, never admitted wrongly.
//
// Tokens: admit reserves the request's tokens in the user's day document (checked against
// the quota in the same CAS) and from the global lease pool; settle replaces the reservation
// by the real count, release returns it. A budget is never overshot by reservations; real
// use can pass it only by what calls consume beyond what they reserved.
//
// Threshold events: the CAS that first takes a window past `threshold × limit` also writes
// the window's period into the document's `f` (fired) marker, so exactly one writer of all
// instances sees itself set it and emits; the event id is a hash of (scope, name, type,
// period), so a retried publish is also dropped by the stream's Nats-Msg-Id dedupe. If the
// process dies between the write and the publish the event is lost (at most once).
import { createHash, randomUUID } from "node:crypto";
import type { AdmitRequest, Ticket } from "../context/types";
import { encodeName, key } from "../keys";
import type { RateLimitsRemaining } from "../schemas";
import { calendar, secondsUntil, type Windows } from "./calendar";
import { createBatcher, type Known } from "./cas";
import { GlobalPool } from "./lease";
import { checkedKv } from "../kv";
import { docSchema, type ChannelDoc, type Counter, type LimiterOptions, type LimiterStats, type RuntimeLimiter, type UserDoc } from "./types";

type OkTicket = Ticket & { ok: true };
type Code = "rate_limited" | "quota_exceeded";

interface Refusal {
  code: Code;
  window: string;
  end: number;
}

interface Fire {
  scope: "user" | "channel" | "global";
  name: string | null;
  user: string | null;
  channel: string | null;
  type: "hourly" | "daily" | "tokens";
  period: string;
  current: number;
  limit: number;
}

interface Step<T> {
  value: T | undefined;
  result: { refusals: Refusal[]; fires: Fire[] };
}

/** Count of `c` in window `w` (0 when the counter belongs to an earlier window). */
const count = (c: Counter | undefined, w: string) => (c && c.w === w ? c.n : 0);

/** Deterministic event id of one threshold crossing: racing publishers produce the same one. */
export function thresholdEventId(scope: string, name: string | null, type: string, period: string): string {
  const h = createHash("sha256").update(`${scope}\n${name ?? ""}\n${type}\n${period}`).digest("hex");
  return `threshold-${h.slice(0, 40)}`;
}

/** The refusal text callers see, in the contract's form. */
export function refusalMessage(code: Code, window: string, retryAfter: number): string {
  return code === "rate_limited"
    ? `Rate limit exceeded (${window}). Retry after ${retryAfter} seconds.`
    : `Token quota exceeded (${window}). Retry after ${retryAfter} seconds.`;
}

/** Builds the limiter of one instance over the ROSEY_LLM_LIMITS bucket. */
export function createLimiter(opts: LimiterOptions): RuntimeLimiter {
  const { config, clock, events, log } = opts;
  const kv = checkedKv(opts.kv, docSchema, log);
  const L = config.limits;
  const cal = calendar(config.timezone);
  const exemptUsers = new Set(L.exempt_users);
  const exemptChannels = new Set(L.exempt_channels);
  const mark = (limit: number) => Math.max(1, Math.ceil(limit * L.threshold));
  const channelPerHour = (ch: string) => L.channels[ch]?.per_hour ?? L.channel_per_hour;
  const stats: LimiterStats = { admitted: 0, refused: 0, casRetries: 0, rollbacks: 0, leases: 0 };
  const onRetry = () => void stats.casRetries++;
  const settled = new WeakSet<object>();
  // Requests of this instance for the same user or channel share one CAS write (cas.ts).
  const batcher = createBatcher(kv, onRetry);

  const fire = (f: Fire) => {
    try {
      events.emit(
        "usage.threshold",
        { user: f.user, channel: f.channel, threshold_type: f.type, current: f.current, limit: f.limit, period: f.period, scope: f.scope },
        { id: thresholdEventId(f.scope, f.name, f.type, f.period) },
      );
    } catch (err) {
      log.error("threshold event not published", { error: (err as Error).message });
    }
  };

  const pool = new GlobalPool(
    kv,
    L.global_tokens_per_day,
    L.threshold,
    opts.leaseTokens ?? Math.max(1_000, Math.ceil(L.global_tokens_per_day / 100)),
    opts.leaseIdleMs ?? 5_000,
    {
      onThreshold: (day, granted) =>
        fire({ scope: "global", name: null, user: null, channel: null, type: "tokens", period: day, current: granted, limit: L.global_tokens_per_day }),
      onRetry,
      onLease: () => void stats.leases++,
      onError: (err) => log.warn("returning global lease failed", { error: (err as Error).message }),
    },
  );

  /** Admission against every window of a user's document (pure: the CAS may run it again). */
  const userStep = (user: string, channel: string | null, w: Windows, tokens: number) => (cur: UserDoc | undefined): Step<UserDoc> => {
    const m = count(cur?.m, w.minute.id);
    const h = count(cur?.h, w.hour.id);
    const d = cur?.d?.w === w.day.id ? cur.d : { w: w.day.id, n: 0, t: 0, u: 0 };
    const refusals: Refusal[] = [];
    if (m + 1 > L.user_per_minute) refusals.push({ code: "rate_limited", window: "per-minute", end: w.minute.end });
    if (h + 1 > L.user_per_hour) refusals.push({ code: "rate_limited", window: "per-hour", end: w.hour.end });
    if (d.n + 1 > L.user_per_day) refusals.push({ code: "rate_limited", window: "per-day", end: w.day.end });
    // A spent quota refuses even a request that reserves nothing.
    if (d.t + Math.max(tokens, 1) > L.user_tokens_per_day) refusals.push({ code: "quota_exceeded", window: "tokens-per-day", end: w.day.end });
    if (refusals.length) return { value: undefined, result: { refusals, fires: [] } };

    const f = { ...cur?.f };
    const fires: Fire[] = [];
    const base = { scope: "user" as const, name: user, user, channel };
    if (h + 1 >= mark(L.user_per_hour) && f.h !== w.hour.id) {
      f.h = w.hour.id;
      fires.push({ ...base, type: "hourly", period: new Date(w.hour.start).toISOString(), current: h + 1, limit: L.user_per_hour });
    }
    if (d.n + 1 >= mark(L.user_per_day) && f.d !== w.day.id) {
      f.d = w.day.id;
      fires.push({ ...base, type: "daily", period: w.day.id, current: d.n + 1, limit: L.user_per_day });
    }
    const value: UserDoc = {
      m: { w: w.minute.id, n: m + 1 },
      h: { w: w.hour.id, n: h + 1 },
      d: { ...d, n: d.n + 1, t: d.t + tokens },
      f,
    };
    return { value, result: { refusals, fires } };
  };

  const channelStep = (channel: string, user: string | null, w: Windows) => (cur: ChannelDoc | undefined): Step<ChannelDoc> => {
    const limit = channelPerHour(channel);
    const h = count(cur?.h, w.hour.id);
    if (h + 1 > limit) {
      return { value: undefined, result: { refusals: [{ code: "rate_limited", window: "channel-per-hour", end: w.hour.end }], fires: [] } };
    }
    const f = { ...cur?.f };
    const fires: Fire[] = [];
    if (h + 1 >= mark(limit) && f.h !== w.hour.id) {
      f.h = w.hour.id;
      fires.push({
        scope: "channel", name: channel, user, channel, type: "hourly",
        period: new Date(w.hour.start).toISOString(), current: h + 1, limit,
      });
    }
    return { value: { h: { w: w.hour.id, n: h + 1 }, f }, result: { refusals: [], fires } };
  };

  /** Undoes an admission whose other window refused after a race. */
  const undoUser = (k: string, since: number, w: Windows, tokens: number) =>
    batcher.submit<UserDoc, null>(k, since, (cur) => {
      if (!cur) return { value: undefined, result: null };
      const dec = (c: Counter | undefined, id: string) => (c && c.w === id ? { w: id, n: Math.max(0, c.n - 1) } : c);
      const d = cur.d && cur.d.w === w.day.id ? { ...cur.d, n: Math.max(0, cur.d.n - 1), t: Math.max(0, cur.d.t - tokens) } : cur.d;
      return { value: { ...cur, m: dec(cur.m, w.minute.id), h: dec(cur.h, w.hour.id), d }, result: null };
    });
  const undoChannel = (k: string, since: number, w: Windows) =>
    batcher.submit<ChannelDoc, null>(k, since, (cur) => {
      if (!cur?.h || cur.h.w !== w.hour.id) return { value: undefined, result: null };
      return { value: { ...cur, h: { w: w.hour.id, n: Math.max(0, cur.h.n - 1) } }, result: null };
    });

  const refuse = (refusals: Refusal[], now: number): Ticket => {
    // The request is admitted only once every refusing window has rolled over.
    const binding = refusals.reduce((a, b) => (b.end > a.end ? b : a));
    const retry_after = secondsUntil(binding.end, now);
    stats.refused++;
    return { ok: false, code: binding.code, window: binding.window, retry_after, message: refusalMessage(binding.code, binding.window, retry_after) };
  };

  const userKeyOf = (user: string) => key("u", encodeName(user));
  const channelKeyOf = (channel: string) => key("c", encodeName(channel));

  /** Ticket ids carry what settle/release need: the reservation's day and whether the user quota was charged. */
  const ticketId = (day: string, userCharged: boolean) => `${day}:${userCharged ? 1 : 0}:${randomUUID()}`;
  const parseTicket = (t: OkTicket) => {
    const [day, u] = t.id.split(":");
    return { day, userCharged: u === "1" };
  };

  /** Moves a user's day tokens by `delta` and adds `used` to the settled total, on the reservation's day only. */
  const adjustUser = async (user: string, day: string, delta: number, used: number, channel: string | null) => {
    // Starts from the document this instance last wrote (normally the admission's own
    // write), so a settle costs one CAS and no read unless another instance wrote since.
    const out = await batcher.submit<UserDoc, Fire | null>(userKeyOf(user), batcher.tick(), (cur) => {
      // Past midnight the reservation went with its window; nothing to adjust.
      if (!cur?.d || cur.d.w !== day) return { value: undefined, result: null };
      const d = { ...cur.d, t: Math.max(0, cur.d.t + delta), u: cur.d.u + used };
      const f = { ...cur.f };
      let crossed: Fire | null = null;
      if (used > 0 && d.u >= mark(L.user_tokens_per_day) && f.t !== day) {
        f.t = day;
        crossed = { scope: "user", name: user, user, channel, type: "tokens", period: day, current: d.u, limit: L.user_tokens_per_day };
      }
      return { value: { ...cur, d, f }, result: crossed };
    });
    if (out.wrote && out.result) fire(out.result);
  };

  const globalRemaining = (day: string) => pool.remaining(day);

  const limiter: RuntimeLimiter = {
    stats,

    async admit(req: AdmitRequest): Promise<Ticket> {
      const now = clock.now();
      const w = cal.windows(now);
      const day = w.day.id;
      const tokens = Math.max(0, Math.ceil(req.tokens || 0));
      // An exempt user (e.g. one of the bot's own plugins) or an exempt channel (e.g. an
      // operators' room) bypasses the request limits and the user quota, and is not counted
      // in them; the global budget is the operator's spending cap and applies to everyone.
      const exempt = (req.channel !== undefined && exemptChannels.has(req.channel)) || (req.user !== undefined && exemptUsers.has(req.user));
      const userKey = req.user !== undefined && !exempt ? userKeyOf(req.user) : undefined;
      const chanKey = req.channel !== undefined && !exempt ? channelKeyOf(req.channel) : undefined;
      const uStep = userKey ? userStep(req.user!, req.channel ?? null, w, tokens) : undefined;
      const cStep = chanKey ? channelStep(req.channel!, req.user ?? null, w) : undefined;

      // Documents seen after this tick are current for this request; older ones (the
      // last known document of a key, from an earlier request) may be stale.
      const since = batcher.tick();
      const giveBack = () => pool.give(day, tokens);
      const take = pool.take(day, tokens);
      // A user's document this instance wrote or read before needs no read: decide on what
      // we know, and let the compare-and-set find out whether another instance wrote
      // meanwhile. A channel's document is read every time: a busy channel is one key that
      // every instance writes, where a remembered document is mostly stale and writing
      // from memory would let one instance crowd the others out (cas.ts, contended keys).
      let [globalOk, u0, c0] = await Promise.all([
        take,
        userKey ? (batcher.known<UserDoc>(userKey) ?? batcher.read<UserDoc>(userKey)) : undefined,
        chanKey ? batcher.read<ChannelDoc>(chanKey) : undefined,
      ]).catch(async (err) => {
        // A failed read must not keep the tokens taken from the pool.
        if (await take.catch(() => false)) giveBack();
        throw err;
      });
      if (!globalOk) return refuse([{ code: "quota_exceeded", window: "global-tokens-per-day", end: w.day.end }], now);

      // Check both documents before writing either: a full window refuses at no write.
      const refusalsOn = (u?: Known<UserDoc>, c?: Known<ChannelDoc>) => [
        ...(uStep ? uStep(u!.doc.value).result.refusals : []),
        ...(cStep ? cStep(c!.doc.value).result.refusals : []),
      ];
      let early = refusalsOn(u0, c0);
      if (early.length && ((u0 && u0.at <= since) || (c0 && c0.at <= since))) {
        // Decided on a remembered document: another instance may have released or undone
        // since. Refuse only on what the store holds now.
        const again = (k: string | undefined, d: Known<unknown> | undefined) => (k && d && d.at <= since ? batcher.read(k, true) : d);
        try {
          [u0, c0] = (await Promise.all([again(userKey, u0), again(chanKey, c0)])) as [Known<UserDoc> | undefined, Known<ChannelDoc> | undefined];
        } catch (err) {
          giveBack();
          throw err;
        }
        early = refusalsOn(u0, c0);
      }
      if (early.length) {
        giveBack();
        return refuse(early, now);
      }

      const [uo, co] = await Promise.allSettled([
        userKey ? batcher.submit(userKey, since, uStep!) : undefined,
        chanKey ? batcher.submit(chanKey, since, cStep!) : undefined,
      ]);
      const wroteUser = uo.status === "fulfilled" && !!uo.value?.wrote;
      const wroteChan = co.status === "fulfilled" && !!co.value?.wrote;
      for (const o of [uo, co]) if (o.status === "fulfilled" && o.value?.wrote) o.value.result.fires.forEach(fire);

      const failed = [uo, co].find((o): o is PromiseRejectedResult => o.status === "rejected");
      const late = [uo, co].flatMap((o) => (o.status === "fulfilled" && o.value ? o.value.result.refusals : []));
      if (failed || late.length) {
        // Lost a race on one window (or the bucket failed): undo the other so the refused
        // request consumes nothing.
        const undo: Promise<unknown>[] = [];
        if (wroteUser) undo.push(undoUser(userKey!, since, w, tokens));
        if (wroteChan) undo.push(undoChannel(chanKey!, since, w));
        if (undo.length) stats.rollbacks++;
        giveBack();
        await Promise.all(undo);
        if (failed) throw failed.reason;
        return refuse(late, now);
      }

      stats.admitted++;
      const ticket: OkTicket = { ok: true, id: ticketId(day, !!userKey), reserved: tokens };
      if (req.user !== undefined) ticket.user = req.user;
      if (req.channel !== undefined) ticket.channel = req.channel;
      return ticket;
    },

    async settle(ticket, tokens) {
      if (settled.has(ticket)) return;
      settled.add(ticket);
      const { day, userCharged } = parseTicket(ticket);
      const used = Math.max(0, Math.ceil(tokens));
      const delta = used - ticket.reserved;
      if (delta < 0) pool.give(day, -delta);
      else pool.overdraw(day, delta);
      if (userCharged && ticket.user !== undefined) await adjustUser(ticket.user, day, delta, used, ticket.channel ?? null);
    },

    async release(ticket) {
      if (settled.has(ticket)) return;
      settled.add(ticket);
      const { day, userCharged } = parseTicket(ticket);
      pool.give(day, ticket.reserved);
      if (userCharged && ticket.user !== undefined && ticket.reserved > 0) {
        await adjustUser(ticket.user, day, -ticket.reserved, 0, ticket.channel ?? null);
      }
    },

    async remaining(user?: string, channel?: string): Promise<RateLimitsRemaining> {
      const w = cal.windows(clock.now());
      // With a channel, per_hour is the tighter of the user's and the channel's hour.
      if (channel !== undefined && !exemptChannels.has(channel) && !(user !== undefined && exemptUsers.has(user))) {
        const [own, { doc }] = await Promise.all([limiter.remaining(user), batcher.read<ChannelDoc>(channelKeyOf(channel))]);
        const left = Math.max(0, channelPerHour(channel) - count(doc.value?.h, w.hour.id));
        return { ...own, per_hour: Math.min(own.per_hour, left) };
      }
      if (user === undefined || exemptUsers.has(user)) {
        const global = await globalRemaining(w.day.id);
        // -1: no request limit applies to an exempt user.
        if (user !== undefined) return { per_minute: -1, per_hour: -1, per_day: -1, tokens_today: global };
        return {
          per_minute: L.user_per_minute,
          per_hour: L.user_per_hour,
          per_day: L.user_per_day,
          tokens_today: Math.min(L.user_tokens_per_day, global),
        };
      }
      const [{ doc }, global] = await Promise.all([batcher.read<UserDoc>(userKeyOf(user)), globalRemaining(w.day.id)]);
      const cur = doc.value;
      const d = cur?.d?.w === w.day.id ? cur.d : undefined;
      return {
        per_minute: Math.max(0, L.user_per_minute - count(cur?.m, w.minute.id)),
        per_hour: Math.max(0, L.user_per_hour - count(cur?.h, w.hour.id)),
        per_day: Math.max(0, L.user_per_day - (d?.n ?? 0)),
        tokens_today: Math.max(0, Math.min(L.user_tokens_per_day - (d?.t ?? 0), global)),
      };
    },

    async limited(user?: string): Promise<boolean> {
      const r = await limiter.remaining(user);
      if (r.tokens_today <= 0) return true;
      return user !== undefined && (r.per_minute === 0 || r.per_hour === 0 || r.per_day === 0);
    },

    close: () => pool.close(),
  };
  return limiter;
}

