// The global daily token budget, handed out to instances in time-boxed leases.
//
// Every request would otherwise compare-and-set one key (`g.<day>`), which makes that key a
// queue for the whole service. Instead an instance takes a block of budget with one CAS and
// serves reservations from it locally: a settled call that used less than it reserved puts
// the difference back in the local pool; a pool grown beyond two blocks, an idle pool and
// the pool at close() go back to the bucket.
//
// What is stored:
//   g.<day>               { spent, leases: { <tag>: { n, exp, b, s } } }
//   i.<day>.<tag>         { q, u, p }: the calls instance <tag> settled today
// `n` is what the instance was granted and did not give back, `u` what it spent. Each
// settle writes `u` before the call's reply (with the service's totals, which are the sum
// of these documents), so every answer given is in some `u`. `b` is the part of `u` that was
// already in `spent` when the lease was opened (from earlier leases of the same tag). Available = budget − spent − Σ n.
//
// Exactness: a lease CAS never lets spent + Σ n exceed the budget, and a reservation is only
// served from a pool, which holds granted tokens, so reservations never overshoot the
// budget. Real use can pass it only by what calls consume beyond their reservation (settle
// cannot refuse; the pool goes negative and the next lease covers the overdraft).
//
// Crash healing: a lease is valid until `exp`, renewed every heartbeatMs (with `s`, the
// instance's spend so far); its holder stops serving from it `MARGIN` before `exp` unless
// renewed. Anyone who finds a lease past `exp` takes it back: it closes the holder's
// `i.<day>.<tag>` (marks it `x`, fixing `u`), then in one CAS of `g` adds u − b to `spent`
// and removes the lease. Nothing is overspent:
//   - every token the dead instance settled is in its `u` (written before its reply), so
//     it moves to `spent`; only its free pool and its unsettled reservations return. A
//     reservation whose call never settled delivered no answer: it returns, as it does to
//     the user's quota (limiter.ts).
//   - an instance that is alive but was cut off (a partition, a stalled process) cannot
//     add to its closed `u`: its next settle finds `x`, and it continues under a new tag
//     whose lease carries that spend as an overdraft; it served nothing from the old pool
//     after MARGIN before `exp` (clocks of instances may differ by less than MARGIN).
//   - a taker that dies half-way leaves `x` set and the lease in `g`; the next taker
//     reads the same fixed `u` and finishes. Removing the lease is the CAS, so it is done once.
// A dead instance's lease is taken back by the first lease, heartbeat or give-back of
// another instance after `exp` (≤ ttlMs + heartbeatMs after its last renewal, 40 s by
// default) and counts as taken back for reads (remaining) from `exp` on.
//
// The price of leases is the other direction: an instance may refuse while other instances'
// pools hold unused blocks. Blocks are at most `leaseTokens` and at most 1/8 of what is
// left, so near the end of the budget the stranded amount shrinks with it; idle instances
// return theirs after `idleMs`, busy ones their surplus.
import { encodeName, key } from "../keys";
import type { Batcher } from "../kv";
import type { Clock } from "../context/types";
import type { History } from "./history";
import type { Pending } from "./pending";
import { addSpend } from "./steps";
import type { GlobalDoc, InstanceDoc, Lease, PendingEvent, Spend } from "./types";

/** Key of a day's global budget document. */
export const globalKey = (day: string) => key("g", day);
/** Key of one instance's spend of a day. */
export const instanceKey = (day: string, tag: string) => key("i", day, tag);
/** Key filter of every instance's spend of a day. */
export const instancesOf = (day: string) => `${key("i", day)}.*`;

export interface PoolOptions {
  batcher: Batcher;
  clock: Clock;
  pending: Pending;
  history: History;
  budget: number;
  threshold: number;
  /** This instance's name; a lease taken back makes it continue under `<name>~<n>`. */
  instance: string;
  leaseTokens: number;
  idleMs: number;
  heartbeatMs: number;
  ttlMs: number;
  onLease(): void;
  onReclaim(): void;
  onError(what: string, err: unknown): void;
}

/** Where a reservation's tokens came from: the pool of one day and one lease generation of one instance. */
export interface Origin {
  day: string;
  epoch: string;
}

/** A reservation from the pool, or a refusal: `spent` when settled use alone leaves too little. */
export type Take = { ok: true; origin: Origin } | { ok: false; spent: boolean };

const emptyDoc = (): GlobalDoc => ({ spent: 0, leases: {} });
const emptySpend = (): InstanceDoc => ({ q: 0, u: 0, p: {} });

type LeaseResult =
  | { kind: "ok"; block: number; expired: string[]; fired: PendingEvent[] }
  | { kind: "short"; settled: number; expired: string[] }
  | { kind: "lost" };

export class GlobalPool {
  private day = "";
  /** Lease generations of this instance (a lease taken back starts a new one). */
  private generation = 0;
  private readonly nonce = Math.random().toString(36).slice(2, 8);
  private tag: string;
  /** Tokens this instance may still hand out; negative when settles overdrew it. */
  private avail = 0;
  /** Our lease exists in `g` (as far as we know), valid until `exp`. */
  private open = false;
  private exp = 0;
  /** Our InstanceDoc.u of this day and tag, as last written. */
  private spent = 0;
  /** The part of `spent` already in the day's `spent` (our leases closed before). */
  private accounted = 0;
  /** Our InstanceDoc as last written, and whether history has a copy of it yet. */
  private mine: InstanceDoc | undefined;
  private copied = false;
  /** Reservations served from the current lease and not settled or released yet. */
  private inflight = 0;
  private lastTake = 0;
  /** One lease CAS at a time per instance: racing reservations share its result. */
  private lock: Promise<unknown> = Promise.resolve();
  private idle: ReturnType<typeof setTimeout> | undefined;
  private beat: ReturnType<typeof setInterval> | undefined;
  private readonly reclaiming = new Set<string>();
  /** Stop serving from a lease this long before it expires unless renewed. */
  private readonly margin: number;

  constructor(private readonly o: PoolOptions) {
    this.tag = encodeName(o.instance);
    this.margin = Math.min(10_000, Math.floor(o.ttlMs / 3));
  }

  /** Reserves `tokens` of `day`'s budget from the local pool, leasing more when it runs short. */
  async take(day: string, tokens: number): Promise<Take> {
    this.roll(day);
    if (tokens <= 0) return { ok: true, origin: this.origin() };
    this.lastTake = this.o.clock.now();
    this.touch();
    const served = this.serveLocal(tokens);
    if (served) return served;
    return this.serial(async () => {
      this.roll(day);
      // A lease taken while we waited for the lock may already cover us.
      return this.serveLocal(tokens) ?? this.lease(day, tokens);
    });
  }

  /**
   * Accounts a settled reservation: the unused part returns to the pool; spend beyond it
   * overdraws. A reservation is settled or released by the instance that made it (lib/llm);
   * one from elsewhere is all new spend here and stays in flight in its own pool.
   */
  settled(from: Origin, reserved: number, used: number): void {
    if (this.current(from)) {
      this.inflight -= reserved;
      this.avail += reserved - used;
    } else {
      // Its lease is gone (taken back, or another day): all it used is new spend here.
      this.avail -= used;
    }
    if (this.avail > 2 * this.o.leaseTokens) void this.serial(() => this.giveBack("surplus"));
  }

  /** Returns a reservation whose call failed. */
  released(from: Origin, reserved: number): void {
    if (!this.current(from)) return;
    this.inflight -= reserved;
    this.avail += reserved;
  }

  /**
   * Stores one settled call's spend in this instance's document of `day` (today); resolves
   * once it is stored (the service's totals then include it).
   */
  async record(day: string, spend: Spend): Promise<void> {
    this.roll(day);
    for (;;) {
      const tag = this.tag;
      // Only this instance creates its document: no read before the first write.
      this.o.batcher.assumeAbsent(instanceKey(day, tag));
      const out = await this.o.batcher.submit<InstanceDoc, number | undefined>(instanceKey(day, tag), -1, (cur) =>
        cur?.x ? { value: undefined, result: cur.u } : { value: addSpend(cur ?? emptySpend(), spend), result: undefined },
      );
      const ours = day === this.day && tag === this.tag;
      if (out.result === undefined) {
        if (ours) {
          this.mine = out.doc.value!;
          this.spent = this.mine.u;
          // The day's first call: history has the instance's share from the start of the day.
          if (!this.copied) this.copy();
        }
        return;
      }
      // Our lease was taken back while we were cut off: continue under a new tag.
      if (ours) this.renew(out.result);
    }
  }

  /** Tokens that can still be reserved today (by anyone), counting a lease past its expiry as taken back. */
  async remaining(day: string): Promise<number> {
    const doc = (await this.o.batcher.read<GlobalDoc>(globalKey(day))).doc.value ?? emptyDoc();
    const now = this.o.clock.now();
    let taken = doc.spent;
    await Promise.all(
      Object.entries(doc.leases).map(async ([tag, l]) => {
        if (tag === this.tag && this.day === day) taken += l.n - Math.max(0, this.avail);
        else if (l.exp > now) taken += l.n;
        else taken += Math.max(0, (await this.spentBy(day, tag)) - l.b);
      }),
    );
    return Math.max(0, this.o.budget - taken);
  }

  /** Settles the lease with the bucket: spend moves to `spent`, the rest returns. Call when draining. */
  async close(): Promise<void> {
    if (this.idle) clearTimeout(this.idle);
    if (this.beat) clearInterval(this.beat);
    this.idle = this.beat = undefined;
    if (this.open) await this.serial(() => this.giveBack("close"));
  }

  /** Copies our share of the day to history (history.ts). */
  private copy(): void {
    if (!this.mine) return;
    this.copied = true;
    this.o.history.copy(instanceKey(this.day, this.tag), this.mine, this.day);
  }

  private origin(): Origin {
    return { day: this.day, epoch: `${this.nonce}-${this.generation}` };
  }

  private current(o: Origin): boolean {
    const now = this.origin();
    return o.day === now.day && o.epoch === now.epoch;
  }

  private serveLocal(tokens: number): Take | undefined {
    if (!this.open || this.avail < tokens || this.o.clock.now() >= this.exp - this.margin) return undefined;
    this.avail -= tokens;
    this.inflight += tokens;
    return { ok: true, origin: this.origin() };
  }

  private roll(day: string): void {
    // Leases of a past day are worthless; their documents expire with the bucket's max age.
    if (this.day === day) return;
    // The day that ends: our share of it as it was last written.
    if (this.day) this.copy();
    this.day = day;
    this.avail = this.inflight = this.spent = this.accounted = 0;
    this.mine = undefined;
    this.copied = false;
    this.open = false;
  }

  /** Continues under a new tag after our lease was taken back; `finalSpent` is the closed document's `u`. */
  private renew(finalSpent?: number): void {
    const old = this.tag;
    this.generation++;
    this.tag = encodeName(`${this.o.instance}~${this.generation}`);
    this.avail = this.inflight = this.spent = this.accounted = 0;
    this.mine = undefined;
    this.copied = false;
    this.open = false;
    if (finalSpent === undefined) return;
    // The taker may have stopped between closing our document and removing our lease.
    const day = this.day;
    void this.o.batcher
      .submit<GlobalDoc, null>(globalKey(day), -1, (cur) => {
        const l = cur?.leases[old];
        if (!cur || !l) return { value: undefined, result: null };
        const { [old]: _gone, ...leases } = cur.leases;
        return { value: { ...cur, spent: cur.spent + Math.max(0, finalSpent - l.b), leases }, result: null };
      })
      .catch((err) => this.o.onError("closing a lease taken back failed", err));
  }

  private touch(): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      this.idle = undefined;
      void this.serial(() => this.giveBack("idle"));
    }, this.o.idleMs);
    this.idle.unref?.();
  }

  private heartbeat(): void {
    if (this.beat) return;
    this.beat = setInterval(() => {
      if (!this.open) {
        clearInterval(this.beat);
        this.beat = undefined;
        return;
      }
      void this.serial(() => this.giveBack("renew"));
    }, this.o.heartbeatMs);
    this.beat.unref?.();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** Tokens settled today as far as `doc` and this instance know: ours exactly, the others' as of their last write. */
  private settledIn(doc: GlobalDoc): number {
    let settled = doc.spent;
    for (const [tag, l] of Object.entries(doc.leases)) settled += Math.max(0, (tag === this.tag ? this.spent : l.s) - l.b);
    return settled;
  }

  /** What every write of `g` does besides its own change: the threshold, pending events, expired leases. */
  private common(doc: GlobalDoc, leases: Record<string, Lease>, now: number): { doc: GlobalDoc; fired: PendingEvent[]; stale: PendingEvent[]; expired: string[] } {
    const settled = this.settledIn({ ...doc, leases });
    const fired: PendingEvent[] = [];
    let f = doc.f;
    if (settled >= Math.ceil(this.o.budget * this.o.threshold) && f !== this.day) {
      f = this.day;
      fired.push(
        this.o.pending.crossing(
          { scope: "global", user: null, channel: null, threshold_type: "tokens", current: settled, limit: this.o.budget, period: this.day },
          null,
          now,
        ),
      );
    }
    const { e, stale } = this.o.pending.tidy(doc, fired, now);
    const expired = Object.keys(leases).filter((t) => t !== this.tag && leases[t].exp <= now);
    return { doc: { ...doc, leases, f, e }, fired, stale, expired };
  }

  /** Takes a block covering `need` (and any overdraft) with one CAS, then serves `need` from it. */
  private async lease(day: string, need: number, retried = false): Promise<Take> {
    const now = this.o.clock.now();
    let after: ReturnType<GlobalPool["common"]> | undefined;
    let entry: Lease | undefined;
    const out = await this.o.batcher.submit<GlobalDoc, LeaseResult>(globalKey(day), this.o.batcher.tick(), (cur) => {
      const doc = cur ?? emptyDoc();
      const mine = doc.leases[this.tag];
      if (this.open && !mine) return { value: undefined, result: { kind: "lost" } };
      let taken = doc.spent;
      for (const l of Object.values(doc.leases)) taken += l.n;
      const left = this.o.budget - taken;
      const want = need - this.avail;
      const expired = Object.keys(doc.leases).filter((t) => t !== this.tag && doc.leases[t].exp <= now);
      if (left < want) return { value: undefined, result: { kind: "short", settled: this.settledIn(doc), expired } };
      const block = want <= 0 ? 0 : Math.min(left, Math.max(want, Math.min(this.o.leaseTokens, Math.ceil(left / 8))));
      entry = { n: (mine?.n ?? 0) + block, exp: now + this.o.ttlMs, b: mine?.b ?? this.accounted, s: this.spent };
      after = this.common(doc, { ...doc.leases, [this.tag]: entry }, now);
      return { value: after.doc, result: { kind: "ok", block, expired: after.expired, fired: after.fired } };
    });
    const r = out.result;
    if (r.kind === "lost") {
      this.renew();
      return retried ? { ok: false, spent: false } : this.lease(day, need, true);
    }
    if (r.expired.length) {
      const taking = Promise.all(r.expired.map((t) => this.reclaim(day, t)));
      // Short of budget while dead instances hold some: take theirs back and try once more.
      if (r.kind === "short" && !retried) {
        await taking;
        return this.lease(day, need, true);
      }
    }
    if (r.kind === "short") return { ok: false, spent: r.settled + need > this.o.budget };
    this.o.onLease();
    this.copy();
    this.o.pending.publish(globalKey(day), [...r.fired, ...(after?.stale ?? [])]);
    this.open = true;
    this.exp = entry!.exp;
    this.avail += r.block - need;
    this.inflight += need;
    this.heartbeat();
    return { ok: true, origin: this.origin() };
  }

  /**
   * One write of our lease: "renew" extends it, "surplus" also hands back free tokens beyond
   * one block, "idle" all free tokens, and "idle" with nothing in flight or "close" moves
   * our spend to `spent` and removes the lease. An overdraft is added to the lease.
   */
  private async giveBack(mode: "renew" | "surplus" | "idle" | "close"): Promise<void> {
    if (!this.open) return;
    const day = this.day;
    // Only with nothing in flight: a settle after the lease is closed would be spend outside it.
    const closing = (mode === "close" || mode === "idle") && this.inflight === 0;
    const back = mode === "renew" ? 0 : Math.max(0, this.avail - (mode === "surplus" ? this.o.leaseTokens : 0));
    // Take from the pool first so reservations racing the CAS cannot spend it twice.
    this.avail -= back;
    const deficit = Math.max(0, -this.avail);
    const now = this.o.clock.now();
    const spentNow = this.spent;
    let after: ReturnType<GlobalPool["common"]> | undefined;
    try {
      const out = await this.o.batcher.submit<GlobalDoc, "ok" | "lost">(globalKey(day), -1, (cur) => {
        const doc = cur ?? emptyDoc();
        const mine = doc.leases[this.tag];
        if (!mine) return { value: undefined, result: "lost" };
        const { [this.tag]: _mine, ...others } = doc.leases;
        const leases = closing
          ? others
          : { ...doc.leases, [this.tag]: { ...mine, n: mine.n - back + deficit, exp: now + this.o.ttlMs, s: spentNow } };
        const spent = closing ? doc.spent + Math.max(0, spentNow - mine.b) : doc.spent;
        after = this.common({ ...doc, spent }, leases, now);
        return { value: after.doc, result: "ok" };
      });
      if (day !== this.day) return;
      if (out.result === "lost") return this.renew();
      this.avail += deficit;
      this.copy();
      this.o.pending.publish(globalKey(day), [...after!.fired, ...after!.stale]);
      for (const t of after!.expired) void this.reclaim(day, t);
      if (closing) {
        this.open = false;
        this.accounted = spentNow;
      } else this.exp = now + this.o.ttlMs;
    } catch (err) {
      if (day === this.day) this.avail += back;
      this.o.onError("writing the global lease failed", err);
    }
  }

  /** What an instance spent, as it last wrote it. */
  private async spentBy(day: string, tag: string): Promise<number> {
    return (await this.o.batcher.read<InstanceDoc>(instanceKey(day, tag))).doc.value?.u ?? 0;
  }

  /** The final spend of an instance whose lease expired: closes its document (see the header), and copies it to history. */
  private async closeTheirs(day: string, tag: string): Promise<number> {
    const k = instanceKey(day, tag);
    const out = await this.o.batcher.submit<InstanceDoc, InstanceDoc>(k, -1, (cur) =>
      cur?.x ? { value: undefined, result: cur } : { value: { ...(cur ?? emptySpend()), x: true }, result: cur ?? emptySpend() },
    );
    this.o.history.copy(k, out.result, day);
    return out.result.u;
  }

  /** Takes back an expired lease of another instance. */
  private async reclaim(day: string, tag: string): Promise<void> {
    if (this.reclaiming.has(tag)) return;
    this.reclaiming.add(tag);
    try {
      const u = await this.closeTheirs(day, tag);
      const now = this.o.clock.now();
      const out = await this.o.batcher.submit<GlobalDoc, boolean>(globalKey(day), -1, (cur) => {
        const l = cur?.leases[tag];
        if (!cur || !l || l.exp > now) return { value: undefined, result: false };
        const { [tag]: _gone, ...leases } = cur.leases;
        return { value: { ...cur, spent: cur.spent + Math.max(0, u - l.b), leases }, result: true };
      });
      if (out.result) this.o.onReclaim();
    } catch (err) {
      this.o.onError("taking back an expired lease failed", err);
    } finally {
      this.reclaiming.delete(tag);
    }
  }
}
