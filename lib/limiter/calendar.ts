// Window boundaries in the configured time zone.
//
// Minute windows are UTC minutes (every zone offset in use is a whole number of minutes).
// Hour windows start on the local hour mark and last 60 real minutes; they are named by
// their start instant, so the repeated hour of a DST fall-back is two windows, not one of
// two hours. Day windows are calendar days: from the first instant whose local date is D
// to the first instant whose local date is D+1 — 23 or 25 hours across a DST change, and
// correct even where a transition skips local midnight. Day starts are found by binary
// search over Intl-formatted dates, which needs no offset arithmetic, and cached.
//
// Intl formatting is the expensive part (microseconds per call), and every request asks
// for its windows. The last result is kept with the span of instants it holds for — the
// intersection of its minute, hour and day, i.e. normally the rest of the current minute
// — so formatting runs about once a minute, not per request. The date of an instant is
// answered from the last day window the same way.

const MINUTE = 60_000;
const HOUR = 3_600_000;

export interface Window {
  /** Stable name of the window: start instant (ms) for minutes and hours, local date for days. */
  id: string;
  start: number;
  end: number;
}

export interface Windows {
  minute: Window;
  hour: Window;
  day: Window;
}

/** Calendar arithmetic for one IANA time zone. */
export interface Calendar {
  readonly timeZone: string;
  /** The local date `YYYY-MM-DD` of an instant. */
  date(t: number): string;
  /** The minute, hour and day windows containing `t`. */
  windows(t: number): Windows;
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

function makeCalendar(timeZone: string): Calendar {
  const fmt = new Intl.DateTimeFormat("en-US", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
  const parts = (t: number) => {
    const p: Record<string, number> = {};
    for (const { type, value } of fmt.formatToParts(t)) if (type !== "literal") p[type] = Number(value);
    return p as { year: number; month: number; day: number; hour: number; minute: number; second: number };
  };
  const date = (t: number) => {
    const p = parts(t);
    return `${String(p.year).padStart(4, "0")}-${String(p.month).padStart(2, "0")}-${String(p.day).padStart(2, "0")}`;
  };
  /** Local wall-clock time of `t` read as if it were UTC, minus `t`: the zone offset at `t`. */
  const offset = (t: number) => {
    const p = parts(t);
    const wall = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
    return wall - (t - (((t % 1000) + 1000) % 1000));
  };

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

  // The last windows computed, valid for instants in [from, until).
  let last: { w: Windows; from: number; until: number } | undefined;
  const compute = (t: number): Windows => {
    const m = Math.floor(t / MINUTE) * MINUTE;
    const local = t + offset(t);
    const h = t - (((local % HOUR) + HOUR) % HOUR);
    // Frozen: every caller shares the cached object.
    return Object.freeze({
      minute: Object.freeze({ id: String(m), start: m, end: m + MINUTE }),
      hour: Object.freeze({ id: String(h), start: h, end: h + HOUR }),
      day: day(t),
    });
  };

  return {
    timeZone,
    date: (t) => (lastDay && t >= lastDay.start && t < lastDay.end ? lastDay.id : date(t)),
    day,
    windows(t) {
      if (last && t >= last.from && t < last.until) return last.w;
      const w = compute(t);
      last = {
        w,
        from: Math.max(w.minute.start, w.hour.start, w.day.start),
        until: Math.min(w.minute.end, w.hour.end, w.day.end),
      };
      return w;
    },
  };
}

/** Whole seconds from `now` until `end`, at least 1: the caller may retry at that moment. */
export function secondsUntil(end: number, now: number): number {
  return Math.max(1, Math.ceil((end - now) / 1000));
}
