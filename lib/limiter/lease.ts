// The global daily token budget, handed out in leases.
//
// Every request would otherwise compare-and-set one key (`g.<day>`), which makes that key
// a queue for the whole service. Instead an instance takes a block of budget with one CAS
// (`granted += block`) and serves reservations from it locally; settled calls that used
// less than they reserved put the difference back in the local pool; a pool grown beyond
// two blocks, an idle pool, and the pool at close() go back to the bucket (`granted -= n`).
//
// Exactness: the CAS never lets `granted` exceed the budget, and a reservation is only
// served from granted tokens, so reservations never overshoot the budget. Real use can
// exceed it only by what calls consume beyond their reservation (settle cannot refuse).
// The price is the other direction: an instance may refuse while up to one block per
// other instance sits unused in their pools. Blocks are at most `leaseTokens` and at most
// 1/8 of what is left, so near the end of the budget the stranded amount shrinks with it;
// idle instances return theirs after `leaseIdleMs`. An instance that dies strands its pool
// (≤ one block) until the day ends.
import { key } from "../keys";
import { casUpdate, type Kv } from "../kv";
import { readDoc } from "./cas";
import type { GlobalDoc } from "./types";

/** The global key is shared by every instance: many attempts, backoff growing only to ~8 ms. */
const CAS = { attempts: 60, baseDelayMs: 0.25, maxDelayMs: 8 } as const;

export interface LeaseEvents {
  /** Called after the CAS that first took `granted` past the threshold of `day`. */
  onThreshold(day: string, granted: number): void;
  onRetry(): void;
  onLease(): void;
  onError(err: unknown): void;
}

/** Key of a day's global budget document. */
export const globalKey = (day: string) => key("g", day);

export class GlobalPool {
  private day = "";
  /** Tokens this instance holds for `day`; negative when settles overdrew it. */
  private avail = 0;
  /** One lease CAS at a time per instance: racing reservations share its result. */
  private lock: Promise<unknown> = Promise.resolve();
  private idle: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly kv: Kv,
    private readonly budget: number,
    private readonly threshold: number,
    private readonly leaseTokens: number,
    private readonly idleMs: number,
    private readonly ev: LeaseEvents,
  ) {}

  /** Tokens held locally for `day`. */
  held(day: string): number {
    return this.day === day ? this.avail : 0;
  }

  /** Reserves `tokens` of `day`'s budget; false when the budget (as leasable) cannot cover it. */
  async take(day: string, tokens: number): Promise<boolean> {
    if (tokens <= 0) return true;
    this.roll(day);
    this.touch();
    if (this.avail >= tokens) {
      this.avail -= tokens;
      return true;
    }
    return this.serial(async () => {
      this.roll(day);
      // A lease taken while we waited for the lock may already cover us.
      if (this.avail >= tokens) {
        this.avail -= tokens;
        return true;
      }
      const need = tokens - this.avail;
      const out = await casUpdate<GlobalDoc, { ok: boolean; block: number; crossed: boolean }>(
        this.kv,
        globalKey(day),
        (cur) => {
          const granted = cur?.granted ?? 0;
          const left = this.budget - granted;
          if (left < need) return { value: undefined, result: { ok: false, block: 0, crossed: false } };
          const block = Math.min(left, Math.max(need, Math.min(this.leaseTokens, Math.ceil(left / 8))));
          const after = granted + block;
          const crossed = !cur?.fired && after >= Math.ceil(this.budget * this.threshold);
          return { value: { granted: after, fired: cur?.fired || crossed }, result: { ok: true, block, crossed } };
        },
        { ...CAS, onRetry: this.ev.onRetry },
      );
      if (!out.result.ok) return false;
      this.ev.onLease();
      if (out.result.crossed) this.ev.onThreshold(day, out.value!.granted);
      this.roll(day);
      this.avail += out.result.block - tokens;
      return true;
    });
  }

  /** Puts `tokens` back (a release, or a settle that used less than it reserved). */
  give(day: string, tokens: number): void {
    if (this.day !== day || tokens === 0) return;
    this.avail += tokens;
    if (this.avail > 2 * this.leaseTokens) void this.giveBack(day, this.leaseTokens);
  }

  /** Charges `tokens` a call used beyond its reservation; the pool may go negative. */
  overdraw(day: string, tokens: number): void {
    if (this.day === day) this.avail -= tokens;
  }

  /** Returns the whole pool (or records its overdraft) to the bucket. */
  async close(): Promise<void> {
    if (this.idle) clearTimeout(this.idle);
    this.idle = undefined;
    if (this.day) await this.giveBack(this.day, 0);
  }

  /** Tokens of the budget neither granted to an instance nor held by this one, plus ours. */
  async remaining(day: string): Promise<number> {
    const doc = await readDoc<GlobalDoc>(this.kv, globalKey(day));
    return Math.max(0, this.budget - (doc.value?.granted ?? 0)) + Math.max(0, this.held(day));
  }

  private roll(day: string): void {
    // Leases of a past day are worthless; its document expires with the bucket's max age.
    if (this.day !== day) (this.day = day), (this.avail = 0);
  }

  private touch(): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      this.idle = undefined;
      void this.giveBack(this.day, 0);
    }, this.idleMs);
    this.idle.unref?.();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** Returns all but `keep` tokens of the pool (an overdraft: records it) to the day's document. */
  private giveBack(day: string, keep: number): Promise<void> {
    return this.serial(async () => {
      const n = this.avail - keep;
      if (this.day !== day || n === 0 || (keep > 0 && n < 0)) return;
      // Take from the pool first so reservations racing the CAS cannot spend it twice.
      this.avail -= n;
      try {
        await casUpdate<GlobalDoc, null>(
          this.kv,
          globalKey(day),
          (cur) => ({ value: { ...cur, granted: Math.max(0, (cur?.granted ?? 0) - n) }, result: null }),
          { ...CAS, onRetry: this.ev.onRetry },
        );
      } catch (err) {
        this.avail += n;
        this.ev.onError(err);
      }
    });
  }
}
