// The sweep: keeps the finished days of users and channels nobody has written since, before
// their documents expire (48 h after their last write) with them. A user seen on Monday and
// not again loses nothing from `rosey-llm usage`.
//
// It is a few walks, each over one bucket's documents in revision order, a batch of messages
// per step (Kv.scan: one round trip, the bucket's other keys skipped by the server): the
// limits bucket (users' documents `u.<user>`, and channels' `c.<channel>` from before they
// moved) and the memory bucket's channel documents `l.<channel>.doc`. A key's message is its
// last write, so documents come oldest write first, and every user or channel document before
// the first one whose day is still open holds a finished day: that day is kept in the usage
// bucket (history.ts, create-once, under the limiter's key: `c.<channel>` for either kind of
// channel document). A walk stops at that first open document and resumes there the next
// day, when its day has ended; it never has more to walk than the documents written since it
// last stopped, so each document is met about once a day, and what a walk costs follows the
// users and channels active in a day, not everything ever stored.
//
// Where each walk is, is stored in the usage bucket (key `sweep` for the limits bucket,
// `sweep.memory` for the memory bucket: the next revision and the day it last reached an
// open document), advanced by compare-and-set after each batch's copies are stored. Any
// instance may take the next step; two taking the same one copy the same days, and
// create-once stores each of them once, and only one advances the position. A process that
// dies mid-step leaves the positions where they were, and the next step (of any instance)
// does those batches again. A day counts as finished `graceMs` after it ended, so late
// writes of that day (a channel's usage waits up to 1.5 s; clocks of instances differ a
// little) are in it before it is kept.
import type { Clock, Logger } from "../context/types";
import { isKvConflict, type Kv, type KvChange } from "../kv";
import type { Calendar } from "./calendar";
import type { History } from "./history";
import { ChannelDoc, UserDoc, type DayUsage, type SweepSettings, type SweepStep } from "./types";

/** Key of the limits bucket's walk position in the usage bucket. */
export const SWEEP_KEY = "sweep";
/** Key of the memory bucket's walk position in the usage bucket. */
export const MEMORY_SWEEP_KEY = "sweep.memory";

export const SWEEP_DEFAULTS: SweepSettings = { batch: 256, graceMs: 10 * 60_000, idleMs: 60_000, busyMs: 250 };

type Scan = NonNullable<Kv["scan"]>;

/** One walk: a bucket's documents under a filter, from a position of its own. */
export interface SweepSource {
  /** Kv.scan of the bucket walked. */
  scan: Scan;
  /** The keys walked, as a subject filter: the server skips the others. */
  filter: string;
  /** Key of the walk's position in the usage bucket. */
  position: string;
  /** The limiter's key (`u.<user>`, `c.<channel>`) of a walked key, or undefined for a key that holds no user's or channel's day. */
  docKey(key: string): string | undefined;
}

/** The limits bucket's walk: users' documents, and channels' written there before they moved to the memory bucket. */
function limitsWalk(scan: Scan): SweepSource {
  return { scan, filter: ">", position: SWEEP_KEY, docKey: (k) => (/^[uc]\.[^.]+$/.test(k) ? k : undefined) };
}

/** The memory bucket's walk: channels' documents `l.<channel>.doc`, kept as the limiter's `c.<channel>`. */
export function channelsWalk(scan: Scan): SweepSource {
  const docKey = (k: string) => {
    const channel = /^l\.([^.]+)\.doc$/.exec(k)?.[1];
    return channel === undefined ? undefined : `c.${channel}`;
  };
  return { scan, filter: "l.*.doc", position: MEMORY_SWEEP_KEY, docKey };
}

export interface SweepOptions {
  /** Kv.scan of the limits bucket: its walk (limitsWalk) always runs. */
  scan: Scan;
  /** More walks, each from its own position: the memory bucket's channel documents (channelsWalk). */
  sources?: SweepSource[];
  /** The usage bucket (the positions are kept there). */
  usage: Kv;
  history: History;
  calendar: Calendar;
  clock: Clock;
  log: Logger;
  settings?: Partial<SweepSettings>;
}

export interface Sweeper {
  /** One step now (tests, and the timer): a batch of each walk not yet done for the day. */
  step(): Promise<SweepStep>;
  stop(): void;
}

/** A stored position. */
interface Position {
  seq: number;
  /** The last day (as `closedBefore`) whose walk reached an open document or the end. */
  done?: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The day a user's (`u.`) or channel's (`c.`) stored document holds, or undefined for a deletion or a malformed value. */
function dayOf(docKey: string, m: KvChange): DayUsage | undefined {
  if (!m.entry) return undefined;
  try {
    const parsed = (docKey[0] === "u" ? UserDoc : ChannelDoc).safeParse(JSON.parse(dec.decode(m.entry.value)));
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
  const { usage, history, clock, log } = opts;
  const cal = opts.calendar;
  // Each walk, and the day it is known to be done for by this instance: no reads until the next one.
  const walks = [limitsWalk(opts.scan), ...(opts.sources ?? [])].map((src) => ({ src, doneFor: undefined as string | undefined }));
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  /** One batch of one walk. Days before `closedBefore` are finished; it and `today` are open (a clock a little ahead). */
  async function walk(w: (typeof walks)[number], closedBefore: string, today: string): Promise<SweepStep> {
    const { src } = w;
    if (w.doneFor === closedBefore) return { read: 0, kept: 0, done: true };
    const pos = await usage.get(src.position);
    const at = position(pos?.value);
    if (at.done === closedBefore) {
      w.doneFor = closedBefore;
      return { read: 0, kept: 0, done: true };
    }
    const { changes, more } = await src.scan(src.filter, at.seq, s.batch);
    let next = at.seq;
    let open = false;
    const finished: Array<[string, DayUsage]> = [];
    for (const m of changes) {
      const k = src.docKey(m.key);
      const d = k === undefined ? undefined : dayOf(k, m);
      // An open day stops the walk: everything after it was written later.
      if (d && d.w >= closedBefore && d.w <= today) {
        open = true;
        break;
      }
      if (d && d.w < closedBefore) finished.push([k!, d]);
      next = m.revision + 1;
    }
    await Promise.all(finished.map(([k, d]) => history.keep(k, d)));
    const done = open || !more;
    const value: Position = done ? { seq: next, done: closedBefore } : { seq: next };
    const bytes = enc.encode(JSON.stringify(value));
    try {
      await (pos ? usage.update(src.position, bytes, pos.revision) : usage.create(src.position, bytes));
      if (done) w.doneFor = closedBefore;
    } catch (err) {
      // Another instance moved the position first: its next step starts from there.
      if (!isKvConflict(err)) throw err;
    }
    return { read: changes.length, kept: finished.length, done };
  }

  async function step(): Promise<SweepStep> {
    const now = clock.now();
    const closedBefore = cal.date(now - s.graceMs);
    const today = cal.date(now);
    // Every walk finishes its batch before a failure of one is reported: none is left half-done behind the step.
    const results = await Promise.allSettled(walks.map((w) => walk(w, closedBefore, today)));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    const steps = results.map((r) => (r as PromiseFulfilledResult<SweepStep>).value);
    return {
      read: steps.reduce((n, x) => n + x.read, 0),
      kept: steps.reduce((n, x) => n + x.kept, 0),
      done: steps.every((x) => x.done),
    };
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
