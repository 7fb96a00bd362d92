// Sliding logs: the per-minute and per-hour limits count the requests of the last 60 s and
// 3,600 s, not of a clock minute or hour. A key's document keeps the admission times (ms,
// ascending, `l`) of its last hour. Exact, and bounded by the limit itself: to decide
// whether one more request fits under limit L, and when it will, only the L newest entries
// matter (a window holding L of them is full whatever came before; it frees up when the
// L-th newest leaves it), so a log holds at most the largest limit it serves.
//
// A request at `now` is counted in the window (now − span, now]: an admission at `a` sees
// every earlier admission younger than `span`, so no interval of length `span` ever holds
// more than L admissions.
//
// A limit above EXACT_ENTRIES (300; e.g. a deployment that sets limits it never means to reach) would
// make the log as large as an hour of traffic. There the newest EXACT_ENTRIES stay exact and
// older ones are kept as counts per minute (`o`: [end of the minute, count]), each counted as
// if it happened at the end of its minute: for as long or longer than it really counts, so
// such a window can refuse up to a minute early, never admit one request too many.

export const MINUTE = 60_000;
export const HOUR = 3_600_000;
/** Admission times kept one by one (the default limits, 100 per user and 300 per channel an hour, fit); beyond, per minute. */
export const EXACT_ENTRIES = 300;

/** The log fields of a document. */
export interface Log {
  l?: number[];
  o?: Array<[number, number]>;
}

/** Index of the first entry younger than `span` at `now` (entries are ascending). */
function firstInside(l: readonly number[], now: number, span: number): number {
  const from = now - span;
  let lo = 0;
  let hi = l.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (l[mid] > from) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Requests of `log` inside the window of `span` ms that ends at `now`. */
export function countIn(log: Log | undefined, now: number, span: number): number {
  let n = log?.l ? log.l.length - firstInside(log.l, now, span) : 0;
  if (log?.o) for (const [t, c] of log.o) if (t > now - span) n += c;
  return n;
}

/**
 * When a request refused at `now` by a full window (at least `limit` entries inside) fits:
 * when the `limit`-th newest entry leaves the window — with limit = count, the oldest
 * counted request. A limit of 0 never admits; the window's length is returned.
 */
export function freeAt(log: Log | undefined, now: number, span: number, limit: number): number {
  const l = log?.l ?? [];
  if (limit <= 0) return now + span;
  if (l.length >= limit) return l[l.length - limit] + span;
  let left = limit - l.length;
  const o = log?.o ?? [];
  for (let i = o.length - 1; i >= 0; i--) if ((left -= o[i][1]) <= 0) return o[i][0] + span;
  return now + span;
}

/** `log` with `t` added in order, keeping only the last hour at `now` and what a limit of `cap` needs. */
export function withEntry(log: Log | undefined, t: number, now: number, cap: number): Log {
  const old = log?.l ?? [];
  const out = old.slice(firstInside(old, now, HOUR));
  let i = out.length;
  // Instances' clocks differ a little: an entry may arrive older than the newest.
  while (i > 0 && out[i - 1] > t) i--;
  out.splice(i, 0, t);
  let o = (log?.o ?? []).filter(([end]) => end > now - HOUR);
  const keep = Math.min(Math.max(1, cap), EXACT_ENTRIES);
  if (out.length > keep) {
    const gone = out.splice(0, out.length - keep);
    // Only a limit above EXACT_ENTRIES still needs them: per minute, counted to its end.
    if (cap > EXACT_ENTRIES) {
      o = o.map(([end, c]) => [end, c] as [number, number]);
      for (const g of gone) {
        const end = Math.ceil((g + 1) / MINUTE) * MINUTE;
        const last = o[o.length - 1];
        if (last && last[0] === end) last[1]++;
        else o.push([end, 1]);
      }
    }
  }
  return o.length ? { l: out, o } : { l: out };
}

/** `log` without one occurrence of `t` (an admission undone). */
export function withoutEntry(log: Log | undefined, t: number): Log {
  const l = log?.l ?? [];
  const i = l.lastIndexOf(t);
  const out = i < 0 ? [...l] : [...l.slice(0, i), ...l.slice(i + 1)];
  return log?.o ? { l: out, o: log.o } : { l: out };
}
