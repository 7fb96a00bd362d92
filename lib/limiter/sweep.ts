// The sweep: keeps the finished days of users and channels nobody has written since, before
// the limits bucket's max age (48 h after a document's last write) drops them with their
// document. A user seen on Monday and not again loses nothing from `rosey-llm usage`.
//
// It walks the limits bucket in revision order, a batch of messages per step (Kv.scan: one
// round trip). A key's message is its last write, so documents come oldest write first, and
// every user or channel document before the first one whose day is still open holds a
// finished day: that day is kept in the usage bucket (history.ts, create-once). The walk
// stops at that first open document and resumes there the next day, when its day has ended;
// it never has more to walk than the documents written since it last stopped, so each
// document is met about once a day, and what a walk costs follows the users and channels
// active in a day, not everything ever stored.
//
// Where the walk is, is stored in the usage bucket (key `sweep`: the next revision and the day
// it last reached an open document), advanced by compare-and-set after each batch's copies
// are stored. Any instance may take the next step; two taking the same one copy the same
// days, and create-once stores each of them once, and only one advances the position. A
// process that dies mid-step leaves the position where it was, and the next step (of any
// instance) does that batch again. A day counts as finished `graceMs` after it ended, so
// late writes of that day (a channel's usage waits up to 1.5 s; clocks of instances differ
// a little) are in it before it is kept.
import type { Clock, Logger } from "../context/types";
import { isKvConflict, type Kv, type KvChange } from "../kv";
import type { Calendar } from "./calendar";
import type { History } from "./history";
import { ChannelDoc, UserDoc, type DayUsage, type SweepSettings, type SweepStep } from "./types";

/** Key of the walk's position in the usage bucket. */
export const SWEEP_KEY = "sweep";

export const SWEEP_DEFAULTS: SweepSettings = { batch: 256, graceMs: 10 * 60_000, idleMs: 60_000, busyMs: 250 };

export interface SweepOptions {
  /** Kv.scan of the limits bucket. */
  scan: NonNullable<Kv["scan"]>;
  /** The usage bucket (the position is kept there). */
  usage: Kv;
  history: History;
  calendar: Calendar;
  clock: Clock;
  log: Logger;
  settings?: Partial<SweepSettings>;
}

/** What one step did. */

export interface Sweeper {
  /** One step now (tests, and the timer). */
  step(): Promise<SweepStep>;
  stop(): void;
}

/** The stored position. */
interface Position {
  seq: number;
  /** The last day (as `closedBefore`) whose walk reached an open document or the end. */
  done?: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The day a user's or channel's message holds, or undefined for any other key, a deletion or a malformed value. */
function dayOf(m: KvChange): DayUsage | undefined {
  if (!m.entry || !(m.key.startsWith("u.") || m.key.startsWith("c."))) return undefined;
  try {
    const parsed = (m.key[0] === "u" ? UserDoc : ChannelDoc).safeParse(JSON.parse(dec.decode(m.entry.value)));
    return parsed.success ? parsed.data.d : undefined;
  } catch {
    return undefined;
  }
}

/** The stored position; one that is not of this shape (written by hand, say) starts the walk over: slower, never wrong. */
function position(value: Uint8Array | undefined): Position {
  try {
    const p = JSON.parse(dec.decode(value)) as Position;
    if (Number.isInteger(p.seq) && p.seq >= 1 && (p.done === undefined || typeof p.done === "string")) return p;
  } catch {
    // not JSON
  }
  return { seq: 1 };
}

/** Starts the sweep of one instance; its steps run on a timer unless settings.idleMs is 0. */
export function createSweeper(opts: SweepOptions): Sweeper {
  const s = { ...SWEEP_DEFAULTS, ...opts.settings };
  const { scan, usage, history, clock, log } = opts;
  const cal = opts.calendar;
  // The day whose walk this instance knows to be done: no reads until the next one.
  let doneFor: string | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  async function step(): Promise<SweepStep> {
    const now = clock.now();
    // Days before this one are finished; this one and the next are open (a clock a little ahead).
    const closedBefore = cal.date(now - s.graceMs);
    const today = cal.date(now);
    if (doneFor === closedBefore) return { read: 0, kept: 0, done: true };
    const pos = await usage.get(SWEEP_KEY);
    const at = position(pos?.value);
    if (at.done === closedBefore) {
      doneFor = closedBefore;
      return { read: 0, kept: 0, done: true };
    }
    const { changes, more } = await scan(">", at.seq, s.batch);
    let next = at.seq;
    let open = false;
    const finished: Array<[string, DayUsage]> = [];
    for (const m of changes) {
      const d = dayOf(m);
      // An open day stops the walk: everything after it was written later.
      if (d && d.w >= closedBefore && d.w <= today) {
        open = true;
        break;
      }
      if (d && d.w < closedBefore) finished.push([m.key, d]);
      next = m.revision + 1;
    }
    await Promise.all(finished.map(([k, d]) => history.keep(k, d)));
    const done = open || !more;
    const value: Position = done ? { seq: next, done: closedBefore } : { seq: next };
    const bytes = enc.encode(JSON.stringify(value));
    try {
      await (pos ? usage.update(SWEEP_KEY, bytes, pos.revision) : usage.create(SWEEP_KEY, bytes));
      if (done) doneFor = closedBefore;
    } catch (err) {
      // Another instance moved the position first: its next step starts from there.
      if (!isKvConflict(err)) throw err;
    }
    return { read: changes.length, kept: finished.length, done };
  }

  const schedule = (ms: number) => {
    if (stopped || s.idleMs === 0) return;
    timer = setTimeout(run, ms);
    timer.unref?.();
  };
  const run = () => {
    step().then(
      (r) => schedule(r.done ? s.idleMs : s.busyMs),
      (err) => {
        log.warn("usage history sweep failed, retrying", { error: (err as Error).message });
        schedule(s.idleMs);
      },
    );
  };
  // Instances that start together do not step together.
  schedule(Math.random() * s.idleMs);

  return {
    step,
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
