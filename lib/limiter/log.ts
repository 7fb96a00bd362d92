// Sliding logs: the per-minute and per-hour limits count the requests of the last 60 s and
// 3,600 s, not of a clock minute or hour. A key's document keeps the admission times
// (ms, ascending) of its last hour. Exact, and bounded by the limit itself: to decide
// whether one more request fits under limit L, and when it will, only the L newest entries
// matter (a window holding L of them is full whatever came before; it frees up when the
// L-th newest leaves it), so a log never holds more than the largest limit it serves.
//
// A request at `now` is counted in the window (now − span, now]: an admission at `a` sees
// every earlier admission younger than `span`, so no interval of length `span` ever holds
// more than L admissions.

export const MINUTE = 60_000;
export const HOUR = 3_600_000;

/** Index of the first entry younger than `span` at `now` (entries are ascending). */
function firstInside(log: readonly number[], now: number, span: number): number {
  const from = now - span;
  let lo = 0;
  let hi = log.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (log[mid] > from) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Requests of `log` inside the window of `span` ms that ends at `now`. */
export function countIn(log: readonly number[] | undefined, now: number, span: number): number {
  return log ? log.length - firstInside(log, now, span) : 0;
}

/**
 * When a request refused at `now` by a full window (at least `limit` entries inside) fits:
 * when the `limit`-th newest entry leaves the window — with limit = count, the oldest
 * counted request. A limit of 0 never admits; the window's length is returned.
 */
export function freeAt(log: readonly number[] | undefined, now: number, span: number, limit: number): number {
  if (!log || limit <= 0 || log.length < limit) return now + span;
  return log[log.length - limit] + span;
}

/** `log` with `t` added in order, keeping only entries younger than `span` at `now`, at most the `cap` newest. */
export function withEntry(log: readonly number[] | undefined, t: number, now: number, span: number, cap: number): number[] {
  const from = log ? Math.max(firstInside(log, now, span), log.length + 1 - Math.max(1, cap)) : 0;
  const out = log ? log.slice(from) : [];
  let i = out.length;
  // Instances' clocks differ a little: an entry may arrive older than the newest.
  while (i > 0 && out[i - 1] > t) i--;
  out.splice(i, 0, t);
  return out;
}

/** `log` without one occurrence of `t` (an admission undone). */
export function withoutEntry(log: readonly number[] | undefined, t: number): number[] | undefined {
  if (!log) return log;
  const i = log.lastIndexOf(t);
  return i < 0 ? [...log] : [...log.slice(0, i), ...log.slice(i + 1)];
}
