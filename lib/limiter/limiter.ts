// Request limits, token quotas, the global budget and usage on the ROSEY_LLM_LIMITS bucket
// (a channel's document: in ROSEY_LLM_MEMORY, see below), exact across instances.
//
// Documents (names base64url-encoded, so `a` and `a.b`, `>` or `*` are separate keys, and
// one hot user or channel only contends with itself):
//   u.<user>      the user's rolling minute and hour (log.ts), today's admissions, tokens
//                 and usage, and the reservations in flight — one CAS admits against every
//                 user limit at once, and one settles the call and records its usage;
//   c.<channel>   the channel's rolling hour and today's usage: kept in the memory bucket,
//                 among the channel's keys (lib/memory/limits-doc.ts), the limiter's Kv
//                 routes it there;
//   g.<day>, i.<day>.<instance>   the global budget in leases and each instance's spend
//                 (lease.ts); the service's usage totals are the sum of the i. documents.
// A day is a calendar day in config.timezone (calendar.ts).
//
// Exactness: every admission is a CAS write of the log with one more entry against the
// revision of the document it decided on, after checking the window on that same
// document. JetStream applies writes to a key in order and rejects one whose expected
// revision is stale, so the admissions of a key form a chain of revisions, each one seeing
// the entries left by the previous: no window can receive more than its limit, whatever
// the number of instances or connections, and a refusal never writes. With limit L and
// more than L racers, every racer keeps retrying (re-read, re-decide) until it has either
// written or read a full window, so exactly L are admitted. Requests of one instance for
// the same key are group-committed (lib/kv/cas.ts): their checks run one after another on
// the same document, each on what the previous left, and go out as one CAS, so the argument
// holds per batch as per request.
//
// Remembered documents: the document a request decides on is the last one this instance
// wrote or read for that key, unless another instance has written the key under us in the
// last seconds (then it is read first; lib/kv/cas.ts). A stale document can only make the
// CAS fail and the retry re-read, never admit more; a refusal (or any decision not to
// write) is taken only on a document observed after the request began, so a stale one
// never refuses wrongly either.
//
// A request with a user and a channel touches two keys: both documents are checked first
// (a full window refuses with no write at all), then both written concurrently; if one of
// them lost its race to the limit meanwhile, the other write is undone by a second CAS. For
// the few milliseconds before that undo a racing request on the undone window may see one
// entry too many — it can only be refused, never admitted wrongly.
//
// Tokens: admit reserves the request's tokens in the user's document (checked against the
// quota in the same CAS, next to what was settled today) and from the global lease pool;
// settle replaces the reservation by the real count, release returns it. Concurrent
// requests can therefore overshoot a quota only by what one call uses beyond what it
// reserved. A reservation carries the time after which anyone may take it back:
// config.service.handler_timeout_ms (when the runtime aborts the request) plus
// RESERVATION_GRACE_MS. So the reservations of an instance that died are gone from the
// user's quota at most that long after they were made (40 s by default), in reads at once
// and in the document at its next write. A call whose reservation was taken back (its
// process stalled past the deadline) still settles: its tokens are then charged in full.
//
// Refusals say when the request fits: a full rolling window when its limit-th newest entry
// leaves it, a day limit at the end of the day, a token quota held by reservations in
// flight when enough of them are settled or taken back at the latest (a quota spent by
// settled calls: the end of the day), the global budget held in other instances' pools
// within a heartbeat.
//
// Channel usage: the channel's document is written at admission, before the call's tokens
// are known. A settled call's usage is kept by this instance and folded into its next
// admission in that channel, or written on its own after usageFlushMs (1 s; at most 1.5 s):
// a channel's usage may lag by that much; the user's and the service's are stored before
// the reply.
//
// Threshold events: see pending.ts.
import { randomUUID } from "node:crypto";
import type { AdmitRequest, Ticket } from "../context/types";
import { encodeName, key } from "../keys";
import { checkedKv, createBatcher, type Known } from "../kv";
import type { RateLimitsRemaining } from "../schemas";
import { calendar, secondsUntil } from "./calendar";
import { GlobalPool, type Origin } from "./lease";
import { HOUR, MINUTE, countIn } from "./log";
import { createHistory } from "./history";
import { createPending } from "./pending";
import { channelsWalk, createSweeper } from "./sweep";
import {
  addChannelUsage,
  admitChannel,
  admitUser,
  extendUser,
  heldTokens,
  releaseUser,
  settleUser,
  spendOf,
  undoChannel,
  undoUser,
  type Code,
  type Cross,
  type Decided,
  type Moment,
  type Refusal,
  type UserLimits,
} from "./steps";
import { addSpend } from "./steps";
import { docSchema, type ChannelDoc, type DayUsage, type LimiterOptions, type LimiterStats, type PendingEvent, type RuntimeLimiter, type Spend, type UserDoc } from "./types";

type OkTicket = Ticket & { ok: true };

/** After the request deadline, a reservation stays this long before anyone may take it back. */
export const RESERVATION_GRACE_MS = 10_000;

/** At most this many channels' usage waits for its write; more are written at once. */
const MAX_UNSENT = 1_024;

/** The refusal text callers see, in the contract's form. */
export function refusalMessage(code: Code, window: string, retryAfter: number, inFlight = false): string {
  if (code === "rate_limited") return `Rate limit exceeded (${window}). Retry after ${retryAfter} seconds.`;
  const held = inFlight ? ", held by requests in flight" : "";
  return `Token quota exceeded (${window}${held}). Retry after ${retryAfter} seconds.`;
}

/** Key of a user's document. */
export const userKey = (user: string) => key("u", encodeName(user));
/** Key of a channel's document. */
export const channelKey = (channel: string) => key("c", encodeName(channel));

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
  const userLimits: UserLimits = {
    perMinute: L.user_per_minute,
    perHour: L.user_per_hour,
    perDay: L.user_per_day,
    tokensPerDay: L.user_tokens_per_day,
    mark,
  };
  const holdMs = config.service.handler_timeout_ms + RESERVATION_GRACE_MS;
  const heartbeatMs = opts.heartbeatMs ?? 10_000;
  const usageFlushMs = opts.usageFlushMs ?? 1_000;
  const stats: LimiterStats = { admitted: 0, refused: 0, casRetries: 0, rollbacks: 0, leases: 0, reclaimed: 0 };
  const settled = new WeakSet<object>();
  // Requests of this instance for the same key share one CAS write (lib/kv/cas.ts).
  const batcher = createBatcher(kv, { onRetry: () => void stats.casRetries++ });
  const pending = createPending(batcher, events, log);
  const history = createHistory(opts.history, log);
  // Finished days of users and channels nobody writes any more go to history before their documents expire.
  const raw = opts.kv;
  const sweeper =
    opts.history && raw.scan
      ? createSweeper({
          scan: (...a) => raw.scan!(...a),
          sources: opts.channelScan ? [channelsWalk(opts.channelScan)] : [],
          usage: opts.history,
          history,
          calendar: cal,
          clock,
          log,
          settings: opts.sweep,
        })
      : undefined;
  const cross: Cross = (ev) => pending.crossing(ev, ev.scope === "user" ? ev.user : ev.channel, clock.now());
  const instance = opts.instance ?? randomUUID();
  const pool = new GlobalPool({
    batcher,
    clock,
    pending,
    history,
    budget: L.global_tokens_per_day,
    threshold: L.threshold,
    instance,
    leaseTokens: opts.leaseTokens ?? Math.max(1_000, Math.ceil(L.global_tokens_per_day / 100)),
    idleMs: opts.leaseIdleMs ?? 5_000,
    heartbeatMs,
    ttlMs: opts.leaseTtlMs ?? 30_000,
    onLease: () => void stats.leases++,
    onReclaim: () => void stats.reclaimed++,
    onError: (what, err) => log.warn(what, { error: (err as Error).message }),
  });

  /** Runs a document step in this instance's next write of `k`; publishes the events it stored or found waiting. */
  async function apply<D extends { e?: PendingEvent[]; d?: DayUsage }, X extends Decided<D> = Decided<D>>(
    k: string,
    since: number,
    decide: (cur: D | undefined) => X,
  ) {
    const now = clock.now();
    let stale: PendingEvent[] = [];
    let ended: DayUsage | undefined;
    const out = await batcher.submit<D, X>(k, since, (cur) => {
      const d = decide(cur);
      if (!d.value) return { value: undefined, result: d };
      const t = pending.tidy(cur, d.fired, now);
      stale = t.stale;
      // This write starts the document's next day: the one it replaces goes to history.
      ended = cur?.d && d.value.d?.w !== cur.d.w ? cur.d : undefined;
      return { value: { ...d.value, e: t.e }, result: d };
    });
    if (out.wrote) {
      pending.publish(k, [...out.result.fired, ...stale]);
      if (ended) void history.keep(k, ended).catch((err) => log.warn("usage history not written", { key: k, error: (err as Error).message }));
    }
    return out;
  }

  const refuse = (refusals: Refusal[], now: number): Ticket => {
    // The request is admitted only once every refusing window lets it through.
    const binding = refusals.reduce((a, b) => (b.at > a.at ? b : a));
    const retry_after = secondsUntil(binding.at, now);
    stats.refused++;
    return {
      ok: false,
      code: binding.code,
      window: binding.window,
      retry_after,
      message: refusalMessage(binding.code, binding.window, retry_after, binding.inFlight),
    };
  };

  // -------------------------------------------------------------- channel usage

  /** Settled usage per channel key not yet in the channel's document, and since when it waits. */
  const unsent = new Map<string, { day: string; spend: Spend; since: number }>();
  let flushTimer: ReturnType<typeof setTimeout> | undefined;
  const writeUsage = (k: string, day: string, spend: Spend) =>
    apply<ChannelDoc>(k, -1, (cur) => addChannelUsage(cur, day, spend)).catch((err) => {
      log.warn("channel usage not written", { key: k, error: (err as Error).message });
    });
  /** Writes the usage that waited `olderThan` ms or more (all of it with 0). */
  const flushUsage = async (olderThan = 0) => {
    const due = [...unsent].filter(([, u]) => Date.now() - u.since >= olderThan);
    for (const [k] of due) unsent.delete(k);
    await Promise.all(due.map(([k, u]) => writeUsage(k, u.day, u.spend)));
  };
  // One timer for every channel: each waits at most usageFlushMs (and half of it again) for
  // its next admission before it is written on its own.
  const tick = () => {
    flushTimer = undefined;
    void flushUsage(usageFlushMs).finally(() => {
      if (unsent.size > 0) schedule();
    });
  };
  const schedule = () => {
    if (flushTimer) return;
    flushTimer = setTimeout(tick, usageFlushMs / 2);
    flushTimer.unref?.();
  };
  const keepUsage = (k: string, day: string, spend: Spend) => {
    const cur = unsent.get(k);
    if (cur && cur.day !== day) void writeUsage(k, cur.day, cur.spend);
    const same = cur && cur.day === day;
    unsent.set(k, { day, spend: same ? addSpend(cur.spend, spend) : spend, since: same ? cur.since : Date.now() });
    if (unsent.size > MAX_UNSENT) void flushUsage();
    else schedule();
  };
  /** The unsent usage of `k` for `day`, taken out to go with an admission's write. */
  const takeUsage = (k: string, day: string) => {
    const cur = unsent.get(k);
    if (!cur || cur.day !== day) return undefined;
    unsent.delete(k);
    return cur.spend;
  };

  // -------------------------------------------------------------- tickets

  let seq = 0;
  const ridPrefix = randomUUID().slice(0, 6);
  /** Ticket ids carry what settle/release need: the pool it was served from and whether the user's quota holds a reservation. */
  const ticketId = (o: Origin, held: boolean, rid: string) => `${o.day}:${o.epoch}:${held ? 1 : 0}:${rid}`;
  const parseTicket = (t: OkTicket) => {
    const [day, epoch, held, rid] = t.id.split(":");
    return { origin: { day, epoch }, held: held === "1", rid };
  };
  const isExempt = (req: { user?: string; channel?: string }) =>
    (req.channel !== undefined && exemptChannels.has(req.channel)) || (req.user !== undefined && exemptUsers.has(req.user));
  const moment = (): Moment => {
    const now = clock.now();
    return { now, day: cal.day(now) };
  };

  const limiter: RuntimeLimiter = {
    stats,

    pendingUsage(channel: string) {
      const u = unsent.get(channelKey(channel));
      return u && u.day === cal.date(clock.now()) ? u.spend : undefined;
    },

    async admit(req: AdmitRequest): Promise<Ticket> {
      const m = moment();
      const { now, day } = m;
      const tokens = Math.max(0, Math.ceil(req.tokens || 0));
      // An exempt user (e.g. one of the bot's own plugins), an exempt channel (e.g. an
      // operators' room) and the service's own calls bypass the request limits and the user
      // quota, and are not counted in them; the global budget is the operator's spending cap
      // and applies to everyone.
      const exempt = req.system === true || isExempt(req);
      const uKey = req.user !== undefined && !exempt ? userKey(req.user) : undefined;
      const cKey = req.channel !== undefined && !exempt ? channelKey(req.channel) : undefined;
      const rid = `${ridPrefix}${(++seq).toString(36)}`;
      const uStep = (cur: UserDoc | undefined) =>
        admitUser(cur, {
          user: req.user!,
          channel: req.channel ?? null,
          m,
          tokens,
          atLeast: Math.ceil(req.atLeast ?? tokens),
          rid,
          expires: now + holdMs,
          limits: userLimits,
          cross,
        });
      const usage = cKey ? takeUsage(cKey, day.id) : undefined;
      const cStep = (cur: ChannelDoc | undefined) =>
        admitChannel(cur, { channel: req.channel!, user: req.user ?? null, m, limit: channelPerHour(req.channel!), mark, cross, usage });
      const keepBack = () => {
        if (usage) keepUsage(cKey!, day.id, usage);
      };

      // Documents seen after this tick are current for this request; older ones (the
      // last known document of a key) may be stale.
      const since = batcher.tick();
      const take = pool.take(day.id, tokens);
      const giveBack = (t: Awaited<typeof take>) => {
        if (t.ok) pool.released(t.origin, tokens);
      };
      const doc = <D>(k: string | undefined) => (k ? (batcher.known<D>(k) ?? batcher.read<D>(k)) : undefined);
      let [global, u0, c0] = await Promise.all([take, doc<UserDoc>(uKey), doc<ChannelDoc>(cKey)]).catch(async (err) => {
        // A failed read must not keep the tokens taken from the pool.
        giveBack(await take.catch(() => ({ ok: false as const, spent: false })));
        keepBack();
        throw err;
      });

      // Check both documents before writing either: a full window refuses at no write.
      const refusalsOn = (u?: Known<UserDoc>, c?: Known<ChannelDoc>) => [
        ...(uKey ? uStep(u!.doc.value).refusals : []),
        ...(cKey ? cStep(c!.doc.value).refusals : []),
      ];
      let early = refusalsOn(u0, c0);
      if (early.length && ((u0 && u0.at <= since) || (c0 && c0.at <= since))) {
        // Decided on a remembered document: another instance may have released or undone
        // since. Refuse only on what the store holds now.
        const again = <D>(k: string | undefined, d: Known<D> | undefined) => (k && d && d.at <= since ? batcher.read<D>(k, true) : d);
        try {
          [u0, c0] = await Promise.all([again(uKey, u0), again(cKey, c0)]);
        } catch (err) {
          giveBack(global);
          keepBack();
          throw err;
        }
        early = refusalsOn(u0, c0);
      }
      if (!global.ok) {
        early.push({ code: "quota_exceeded", window: "global-tokens-per-day", at: global.spent ? day.end : now + heartbeatMs, inFlight: !global.spent });
      }
      if (early.length) {
        giveBack(global);
        keepBack();
        return refuse(early, now);
      }
      const origin = (global as { ok: true; origin: Origin }).origin;

      const [uo, co] = await Promise.allSettled([
        uKey ? apply(uKey, since, uStep) : undefined,
        cKey ? apply<ChannelDoc>(cKey, since, cStep) : undefined,
      ]);
      const wroteUser = uo.status === "fulfilled" && !!uo.value?.wrote;
      const wroteChan = co.status === "fulfilled" && !!co.value?.wrote;
      const failed = [uo, co].find((o): o is PromiseRejectedResult => o.status === "rejected");
      const late = [uo, co].flatMap((o) => (o.status === "fulfilled" && o.value ? o.value.result.refusals : []));
      if (failed || late.length) {
        // Lost a race on one window (or the bucket failed): undo the other so the refused
        // request consumes nothing.
        const undo: Promise<unknown>[] = [];
        if (wroteUser) undo.push(apply<UserDoc>(uKey!, -1, (cur) => undoUser(cur, m, rid)));
        if (wroteChan) undo.push(apply<ChannelDoc>(cKey!, -1, (cur) => undoChannel(cur, now)));
        else keepBack();
        if (undo.length) stats.rollbacks++;
        giveBack(global);
        await Promise.all(undo);
        if (failed) throw failed.reason;
        return refuse(late, now);
      }

      stats.admitted++;
      // A tight quota may have reserved less than asked (atLeast): the rest goes back to the pool.
      const reserved = uo.status === "fulfilled" && uo.value ? uo.value.result.reserved : tokens;
      if (reserved < tokens) pool.released(origin, tokens - reserved);
      const ticket: OkTicket = { ok: true, id: ticketId(origin, !!uKey, rid), reserved };
      if (req.user !== undefined) ticket.user = req.user;
      if (req.channel !== undefined) ticket.channel = req.channel;
      return ticket;
    },

    async extend(ticket, tokens) {
      const extra = Math.max(0, Math.ceil(tokens));
      if (extra === 0) return ticket;
      const m = moment();
      const { held, rid } = parseTicket(ticket);
      const t = await pool.take(m.day.id, extra);
      if (!t.ok) {
        return refuse([{ code: "quota_exceeded", window: "global-tokens-per-day", at: t.spent ? m.day.end : m.now + heartbeatMs, inFlight: !t.spent }], m.now);
      }
      if (held) {
        const out = await apply<UserDoc>(userKey(ticket.user!), batcher.tick(), (cur) => extendUser(cur, m, rid, extra, L.user_tokens_per_day)).catch(
          (err) => {
            pool.released(t.origin, extra);
            throw err;
          },
        );
        if (out.result.refusals.length) {
          pool.released(t.origin, extra);
          return refuse(out.result.refusals, m.now);
        }
      }
      return { ...ticket, reserved: ticket.reserved + extra };
    },

    async settle(ticket, spend) {
      if (settled.has(ticket)) return;
      settled.add(ticket);
      const m = moment();
      const { origin, held, rid } = parseTicket(ticket);
      const used = Math.max(0, Math.ceil(spend.tokens));
      const s = spendOf(used, spend.provider);
      // The user's document and this instance's spend, concurrently; both before the reply.
      await Promise.all([
        ticket.user !== undefined
          ? apply<UserDoc>(userKey(ticket.user), batcher.tick(), (cur) =>
              settleUser(cur, {
                m,
                rid,
                spend: s,
                user: ticket.user!,
                channel: ticket.channel ?? null,
                // The token threshold is about the quota; none for a user it does not apply to.
                ...(held ? { quota: L.user_tokens_per_day, mark } : {}),
                cross,
              }),
            )
          : undefined,
        pool.record(m.day.id, s),
      ]);
      pool.settled(origin, ticket.reserved, used);
      if (ticket.channel !== undefined) keepUsage(channelKey(ticket.channel), m.day.id, s);
    },

    async release(ticket) {
      if (settled.has(ticket)) return;
      settled.add(ticket);
      const { origin, held, rid } = parseTicket(ticket);
      pool.released(origin, ticket.reserved);
      if (held) await apply<UserDoc>(userKey(ticket.user!), batcher.tick(), (cur) => releaseUser(cur, clock.now(), rid));
    },

    async remaining(user?: string, channel?: string): Promise<RateLimitsRemaining> {
      const m = moment();
      // With a channel, per_hour is the tighter of the user's and the channel's hour.
      if (channel !== undefined && !isExempt({ user, channel })) {
        const [own, c] = await Promise.all([limiter.remaining(user), batcher.read<ChannelDoc>(channelKey(channel))]);
        const left = Math.max(0, channelPerHour(channel) - countIn(c.doc.value, m.now, HOUR));
        return { ...own, per_hour: Math.min(own.per_hour, left) };
      }
      if (user === undefined || exemptUsers.has(user)) {
        const global = await pool.remaining(m.day.id);
        // -1: no request limit applies to an exempt user.
        if (user !== undefined) return { per_minute: -1, per_hour: -1, per_day: -1, tokens_today: global };
        return {
          per_minute: L.user_per_minute,
          per_hour: L.user_per_hour,
          per_day: L.user_per_day,
          tokens_today: Math.min(L.user_tokens_per_day, global),
        };
      }
      const [{ doc }, global] = await Promise.all([batcher.read<UserDoc>(userKey(user)), pool.remaining(m.day.id)]);
      const cur = doc.value;
      const { settled: spent, reserved } = heldTokens(cur, m);
      return {
        per_minute: Math.max(0, L.user_per_minute - countIn(cur, m.now, MINUTE)),
        per_hour: Math.max(0, L.user_per_hour - countIn(cur, m.now, HOUR)),
        per_day: Math.max(0, L.user_per_day - (cur?.d?.w === m.day.id ? cur.d.n : 0)),
        tokens_today: Math.max(0, Math.min(L.user_tokens_per_day - spent - reserved, global)),
      };
    },

    async limited(user?: string): Promise<boolean> {
      const r = await limiter.remaining(user);
      if (r.tokens_today <= 0) return true;
      return user !== undefined && (r.per_minute === 0 || r.per_hour === 0 || r.per_day === 0);
    },

    sweep: () => (sweeper ? sweeper.step() : Promise.resolve({ read: 0, kept: 0, done: true })),

    async close() {
      sweeper?.stop();
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = undefined;
      await flushUsage();
      await pool.close();
    },
  };
  return limiter;
}
