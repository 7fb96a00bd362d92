// Calendar days in the configured time zone: the day windows of the per-day limit, the
// token quotas and usage ("today"). The minute and hour limits are rolling (log.ts).
//
// A day is from the first instant whose local date is D to the first instant whose local
// date is D+1 — 23 or 25 hours across a DST change, and correct even where a transition
// skips local midnight. Day starts are found by binary search over Intl-formatted dates,
// which needs no offset arithmetic, and cached. Intl formatting is the expensive part
// (microseconds per call) and every request asks for its day, so the last day window is
// kept and answers every instant inside it.

const HOUR = 3_600_000;

export interface Window {
  /** The local date `YYYY-MM-DD`. */
  id: string;
  start: number;
  end: number;
}

/** Calendar arithmetic for one IANA time zone. */
export interface Calendar {
  readonly timeZone: string;
  /** The local date `YYYY-MM-DD` of an instant. */
  date(t: number): string;
  /** The calendar-day window containing `t`. */
  day(t: number): Window;
}

const calendars = new Map<string, Calendar>();

/** A (cached) calendar for a time zone; throws on an unknown zone. */
export function calendar(timeZone: string): Calendar {
  let c = calendars.get(timeZone);
  if (!c) calendars.set(timeZone, (c = makeCalendar(timeZone)));
  return c;
}

/** The local date `YYYY-MM-DD` of an instant in `timeZone`. */
function dateIn(timeZone: string): (t: number) => string {
  // UTC, the default, needs no time zone data: Intl would map several MB of it into the process.
  if (timeZone === "UTC") return (t) => new Date(t).toISOString().slice(0, 10);
  const fmt = new Intl.DateTimeFormat("en-US", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  });
  return (t) => {
    const p: Record<string, number> = {};
    for (const { type, value } of fmt.formatToParts(t)) if (type !== "literal") p[type] = Number(value);
    return `${String(p.year).padStart(4, "0")}-${String(p.month).padStart(2, "0")}-${String(p.day).padStart(2, "0")}`;
  };
}

function makeCalendar(timeZone: string): Calendar {
  const date = dateIn(timeZone);
  // First instant whose local date is `d` (YYYY-MM-DD). Offsets lie within ±14 h, so the
  // start is within a day and a half of UTC midnight of the same date; ISO dates compare
  // as strings.
  const dayStarts = new Map<string, number>();
  const startOf = (d: string): number => {
    const hit = dayStarts.get(d);
    if (hit !== undefined) return hit;
    const utcMidnight = Date.parse(`${d}T00:00:00Z`);
    let lo = utcMidnight - 36 * HOUR; // local date < d here
    let hi = utcMidnight + 36 * HOUR; // local date > d here
    // Transitions fall on whole seconds; search to the second.
    while (hi - lo > 1000) {
      const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
      if (date(mid) < d) lo = mid;
      else hi = mid;
    }
    if (dayStarts.size > 64) dayStarts.clear();
    dayStarts.set(d, hi);
    return hi;
  };
  const nextDate = (d: string) => new Date(Date.parse(`${d}T12:00:00Z`) + 24 * HOUR).toISOString().slice(0, 10);

  // The last day window computed: the local date of any instant inside it is its id.
  let lastDay: Window | undefined;
  const day = (t: number): Window => {
    if (lastDay && t >= lastDay.start && t < lastDay.end) return lastDay;
    const d = date(t);
    return (lastDay = Object.freeze({ id: d, start: startOf(d), end: startOf(nextDate(d)) }));
  };

  return {
    timeZone,
    date: (t) => (lastDay && t >= lastDay.start && t < lastDay.end ? lastDay.id : date(t)),
    day,
  };
}

/** Whole seconds from `now` until `end`, at least 1: the caller may retry at that moment. */
export function secondsUntil(end: number, now: number): number {
  return Math.max(1, Math.ceil((end - now) / 1000));
}
