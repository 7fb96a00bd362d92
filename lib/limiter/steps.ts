// The decisions on a user's and a channel's documents, as pure functions of the document:
// a compare-and-set runs them again on a fresh read when another instance wrote first.
// They never change the document they are given (it is the remembered copy).
import type { Window } from "./calendar";
import { HOUR, MINUTE, countIn, freeAt, withEntry, withoutEntry } from "./log";
import type { ChannelDoc, DayUsage, PendingEvent, Spend, UserDoc } from "./types";

export type Code = "rate_limited" | "quota_exceeded";

/** Why a request cannot be admitted now, and when it can (ms). */
export interface Refusal {
  code: Code;
  window: string;
  at: number;
  /** The tokens are held by reservations of requests in flight, not spent. */
  inFlight?: boolean;
}

/** A step's decision: the document to write (undefined: none) and what it means. */
export interface Decided<D> {
  value: D | undefined;
  refusals: Refusal[];
  fired: PendingEvent[];
}

/** The moment of a decision: the instant and its calendar day. */
export interface Moment {
  now: number;
  day: Window;
}

export interface UserLimits {
  perMinute: number;
  perHour: number;
  perDay: number;
  tokensPerDay: number;
  /** Count at which a limit's threshold event fires. */
  mark(limit: number): number;
}

/** Makes the pending entry of a threshold crossing (pending.ts). */
export type Cross = (ev: {
  scope: "user" | "channel";
  user: string | null;
  channel: string | null;
  threshold_type: "hourly" | "daily" | "tokens";
  current: number;
  limit: number;
  period: string;
}) => PendingEvent;

const emptySpend = (): Spend => ({ q: 0, u: 0, p: {} });

/** The day usage of `d` if it is of `day`, else a fresh one. */
const today = <T extends DayUsage>(d: T | undefined, day: string, fresh: () => T): T => (d && d.w === day ? d : fresh());
const userDay = (d: UserDoc["d"], day: string) => today(d, day, () => ({ w: day, n: 0, ...emptySpend() }));
const channelDay = (d: ChannelDoc["d"], day: string) => today(d, day, () => ({ w: day, ...emptySpend() }));

/** `a` plus `b` (new objects). */
export function addSpend<T extends Spend>(a: T, b: Spend): T {
  const p = { ...a.p };
  for (const [k, [q, u]] of Object.entries(b.p)) {
    const cur = p[k] ?? [0, 0];
    p[k] = [cur[0] + q, cur[1] + u];
  }
  return { ...a, q: a.q + b.q, u: a.u + b.u, p };
}

/** One completed call's spend. */
export const spendOf = (tokens: number, provider: string): Spend => ({ q: 1, u: tokens, p: { [provider]: [1, tokens] } });

/** Reservations whose take-back time has not passed; the others are gone (a crashed instance's). */
function live(r: UserDoc["r"], now: number): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  if (r) for (const [id, v] of Object.entries(r)) if (v[1] > now) out[id] = v;
  return out;
}

/** Tokens a user holds now: settled today plus reservations in flight. */
export function heldTokens(doc: UserDoc | undefined, m: Moment): { settled: number; reserved: number } {
  const settled = doc?.d?.w === m.day.id ? doc.d.u : 0;
  let reserved = 0;
  for (const [t] of Object.values(live(doc?.r, m.now))) reserved += t;
  return { settled, reserved };
}

/**
 * The refusal of a token request that does not fit: spent quota waits for the next day;
 * a quota held by reservations in flight waits until enough of them are settled or taken
 * back at the latest.
 */
function tokenRefusal(doc: UserDoc | undefined, m: Moment, need: number, quota: number): Refusal | undefined {
  const { settled, reserved } = heldTokens(doc, m);
  if (settled + reserved + need <= quota) return undefined;
  if (settled + need > quota) return { code: "quota_exceeded", window: "tokens-per-day", at: m.day.end };
  const byTime = Object.values(live(doc?.r, m.now)).sort((a, b) => a[1] - b[1]);
  let freed = 0;
  let at = m.now;
  for (const [t, until] of byTime) {
    if (settled + reserved - freed + need <= quota) break;
    freed += t;
    at = until;
  }
  return { code: "quota_exceeded", window: "tokens-per-day", at, inFlight: true };
}

export interface UserAdmission {
  user: string;
  channel: string | null;
  m: Moment;
  tokens: number;
  /** Fewer tokens will do, down to this many, when `tokens` do not fit the quota (AdmitRequest.atLeast). */
  atLeast: number;
  /** Reservation id and when anyone may take it back. */
  rid: string;
  expires: number;
  limits: UserLimits;
  cross: Cross;
}

/** Admission against every limit of a user's document; `reserved` is what it reserved. */
export function admitUser(cur: UserDoc | undefined, a: UserAdmission): Decided<UserDoc> & { reserved: number } {
  const { m, limits: L } = a;
  const { now, day } = m;
  const mins = countIn(cur, now, MINUTE);
  const hours = countIn(cur, now, HOUR);
  const d = userDay(cur?.d, day.id);
  const refusals: Refusal[] = [];
  if (mins + 1 > L.perMinute) refusals.push({ code: "rate_limited", window: "per-minute", at: freeAt(cur, now, MINUTE, L.perMinute) });
  if (hours + 1 > L.perHour) refusals.push({ code: "rate_limited", window: "per-hour", at: freeAt(cur, now, HOUR, L.perHour) });
  if (d.n + 1 > L.perDay) refusals.push({ code: "rate_limited", window: "per-day", at: day.end });
  // A spent quota refuses even a request that reserves nothing.
  const tok = tokenRefusal(cur, m, Math.max(Math.min(a.atLeast, a.tokens), 1), L.tokensPerDay);
  if (tok) refusals.push(tok);
  if (refusals.length) return { value: undefined, refusals, fired: [], reserved: 0 };
  const held = heldTokens(cur, m);
  const reserve = Math.min(a.tokens, L.tokensPerDay - held.settled - held.reserved);

  const f = { ...cur?.f };
  const fired: PendingEvent[] = [];
  const base = { scope: "user" as const, user: a.user, channel: a.channel };
  if (hours + 1 >= L.mark(L.perHour) && (f.h === undefined || now - f.h >= HOUR)) {
    f.h = now;
    fired.push(a.cross({ ...base, threshold_type: "hourly", period: new Date(now).toISOString(), current: hours + 1, limit: L.perHour }));
  }
  if (d.n + 1 >= L.mark(L.perDay) && f.d !== day.id) {
    f.d = day.id;
    fired.push(a.cross({ ...base, threshold_type: "daily", period: day.id, current: d.n + 1, limit: L.perDay }));
  }
  const r = live(cur?.r, now);
  r[a.rid] = [reserve, a.expires];
  const value: UserDoc = {
    ...cur,
    ...withEntry(cur, now, now, Math.max(L.perMinute, L.perHour)),
    d: { ...d, n: d.n + 1 },
    r,
    f,
  };
  return { value, refusals, fired, reserved: reserve };
}

/** More tokens on a reservation already made, against the quota. */
export function extendUser(cur: UserDoc | undefined, m: Moment, rid: string, tokens: number, quota: number): Decided<UserDoc> {
  const tok = tokenRefusal(cur, m, tokens, quota);
  if (tok) return { value: undefined, refusals: [tok], fired: [] };
  const r = live(cur?.r, m.now);
  const [held, until] = r[rid] ?? [0, m.now];
  r[rid] = [held + tokens, until];
  return { value: { ...cur, r }, refusals: [], fired: [] };
}

/**
 * A finished call: its reservation goes, its tokens count as spent today (in full when the
 * reservation was already taken back) and in the user's usage. `quota` fires the token
 * threshold on settled use; none for a user the quota does not apply to.
 */
export function settleUser(
  cur: UserDoc | undefined,
  s: { m: Moment; rid: string; spend: Spend; user: string; channel: string | null; quota?: number; mark?: (n: number) => number; cross: Cross },
): Decided<UserDoc> {
  const r = live(cur?.r, s.m.now);
  delete r[s.rid];
  const d = addSpend(userDay(cur?.d, s.m.day.id), s.spend);
  const f = { ...cur?.f };
  const fired: PendingEvent[] = [];
  if (s.quota !== undefined && s.mark && s.spend.u > 0 && d.u >= s.mark(s.quota) && f.t !== s.m.day.id) {
    f.t = s.m.day.id;
    fired.push(s.cross({ scope: "user", user: s.user, channel: s.channel, threshold_type: "tokens", period: s.m.day.id, current: d.u, limit: s.quota }));
  }
  return { value: { ...cur, d, r, f }, refusals: [], fired };
}

/** A failed call: its reservation goes (nothing when it is already gone). */
export function releaseUser(cur: UserDoc | undefined, now: number, rid: string): Decided<UserDoc> {
  if (!cur?.r?.[rid]) return { value: undefined, refusals: [], fired: [] };
  const r = live(cur.r, now);
  delete r[rid];
  return { value: { ...cur, r }, refusals: [], fired: [] };
}

/** Undoes an admission at `now` whose other document refused after a race. */
export function undoUser(cur: UserDoc | undefined, m: Moment, rid: string): Decided<UserDoc> {
  if (!cur) return { value: undefined, refusals: [], fired: [] };
  const r = live(cur.r, m.now);
  delete r[rid];
  const d = cur.d && cur.d.w === m.day.id ? { ...cur.d, n: Math.max(0, cur.d.n - 1) } : cur.d;
  return { value: { ...cur, ...withoutEntry(cur, m.now), d, r }, refusals: [], fired: [] };
}

export interface ChannelAdmission {
  channel: string;
  user: string | null;
  m: Moment;
  limit: number;
  mark(limit: number): number;
  cross: Cross;
  /** Usage this instance has not written yet, folded into the same write. */
  usage?: Spend;
}

/** Admission against a channel's rolling hour. */
export function admitChannel(cur: ChannelDoc | undefined, a: ChannelAdmission): Decided<ChannelDoc> {
  const { now } = a.m;
  const hours = countIn(cur, now, HOUR);
  if (hours + 1 > a.limit) {
    return { value: undefined, refusals: [{ code: "rate_limited", window: "channel-per-hour", at: freeAt(cur, now, HOUR, a.limit) }], fired: [] };
  }
  const f = { ...cur?.f };
  const fired: PendingEvent[] = [];
  if (hours + 1 >= a.mark(a.limit) && (f.h === undefined || now - f.h >= HOUR)) {
    f.h = now;
    fired.push(
      a.cross({ scope: "channel", user: a.user, channel: a.channel, threshold_type: "hourly", period: new Date(now).toISOString(), current: hours + 1, limit: a.limit }),
    );
  }
  const d = a.usage ? addSpend(channelDay(cur?.d, a.m.day.id), a.usage) : cur?.d;
  return { value: { ...cur, ...withEntry(cur, now, now, a.limit), d, f }, refusals: [], fired };
}

/** Undoes a channel admission at `now`. */
export function undoChannel(cur: ChannelDoc | undefined, now: number): Decided<ChannelDoc> {
  if (!cur?.l) return { value: undefined, refusals: [], fired: [] };
  return { value: { ...cur, ...withoutEntry(cur, now) }, refusals: [], fired: [] };
}

/**
 * Adds usage to a channel's day. Usage of a day the document has already left (it waited
 * here while another instance started the channel's next day) is not written: it would
 * replace the new day, and the old one is closed.
 */
export function addChannelUsage(cur: ChannelDoc | undefined, day: string, usage: Spend): Decided<ChannelDoc> {
  if (cur?.d && cur.d.w > day) return { value: undefined, refusals: [], fired: [] };
  return { value: { ...cur, d: addSpend(channelDay(cur?.d, day), usage) }, refusals: [], fired: [] };
}
