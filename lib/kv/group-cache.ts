// A bounded cache of groups of keys of one KV bucket, read on first use and brought up to
// date before every later use: the memory of each channel, the personas and selections.
//
// A group is every key under one filter (e.g. `*.<channel>.*`). Its first use loads it: one
// snapshot of those keys only. Every later use first asks the bucket what changed under the
// filter since the revision the group was brought to, and applies it: one round trip that
// carries nothing when no other instance wrote. So a use sees every write acknowledged before
// it began, on any instance, with no watch or consumer per group and no mirror of the bucket;
// an evicted group leaves nothing behind.
//
// Uses of one group never read concurrently: a use that arrives while a read is in flight
// waits for it, then joins the one next read, which starts after it arrived. Writes this
// instance makes are applied at once (wrote, deleted), the newer revision of a key winning.
// Bounded by count and bytes, least recently used out first (the group just used stays, so
// the bound is the larger of the limit and one group); a group that holds nothing is not kept. A group not read for staleAfterMs is loaded afresh rather than brought up to
// date: a deletion is only seen through its marker, and markers expire (keep it well below
// their lifetime).
// A value the group cannot read is logged (key named, value not) and skipped. A failed read
// drops the group, so the next use loads it again; the use that saw the failure fails.
//
// Writes that prove the state current (write): the group knows the revision of the last
// message under its filter (`tip`) after a read. A write sent with the condition "the last
// message under the filter is still `tip`" (Kv `within`) that succeeds proves that nothing
// was written under the filter between the state and itself, so the state plus that write is
// the bucket's as of the write, and the write's revision is the new tip. A use that began
// before such a write was sent needs no read (use's `since`): one write instead of a write
// and a read, e.g. a channel's rate-limit document written at admission proves the channel's
// memory for the chat. Conditioned writes of a group go one at a time, each on the last one's
// revision. A write that finds something newer is made again unconditioned, as the caller
// means it (a compare-and-set on the key, say); then, and for a while after any read brought a
// write of another instance (CONTENDED_MS), writes go unconditioned and uses read, as without
// proofs, so groups other instances also write do not pay a failed write on every use. A
// condition that finds an older tip (the last messages expired) only lowers the tip: nothing
// new was written. The server checks a condition exactly only on a stream of one replica
// (`proofs` option): a replicated stream's leader checks it before the writes proposed ahead of
// it are applied.
import type { Clock, Logger } from "../context/types";
import { isKvConflict, KvConflictError, type Kv, type KvEntry, type Within } from "./types";

/** A group unread for this long is loaded again instead of checked (delete markers expire), by default. */
export const STALE_AFTER_MS = 5 * 60_000;

/** How long a group may go unread and still be checked, for markers that live `markerTtlSeconds`. */
export const staleAfter = (markerTtlSeconds: number) => Math.min(STALE_AFTER_MS, (markerTtlSeconds * 1000) / 2);
/** After a write of another instance was seen in a group, its writes go unconditioned this long (see the header). */
export const CONTENDED_MS = 10_000;

/** Bookkeeping of one key besides its name (keys are ASCII: a byte a character): a Map entry and its revision. */
const KEY_OVERHEAD_BYTES = 64;

export interface GroupCacheOptions<S> {
  kv: Kv;
  /** Names the cache in log lines ("memory", "persona"). */
  name: string;
  /** The subject-style filter of a group's keys. */
  filter(group: string): string;
  /** The state of a group with no keys. */
  empty(group: string): S;
  /**
   * Applies a key's newer value (null: deleted) to the state. Throws on a value it cannot
   * read, leaving the key without a value in the state.
   */
  apply(state: S, key: string, entry: KvEntry | null): void;
  /** What the state holds, in bytes (an estimate of the heap it takes). */
  bytes(state: S): number;
  maxGroups: number;
  maxBytes: number;
  /** See the header (default STALE_AFTER_MS). */
  staleAfterMs?: number;
  /**
   * Keep a group that holds no key, like any other (default: drop it, so asking about names
   * nobody wrote leaves nothing behind). For groups asked about on every request whether or
   * not they hold anything, such as a channel's persona selection.
   */
  keepEmpty?: boolean;
  /**
   * Let writes prove groups (default true; see the header). Only for a bucket of one replica:
   * a replicated stream's leader checks a write's condition before the writes proposed ahead
   * of it are applied, so an unconditioned write of another instance in flight could land
   * between the tip and a write that passed its check.
   */
  proofs?: boolean;
  clock: Clock;
  log: Logger;
}

interface Group<S> {
  name: string;
  state: S;
  /** Revision of each key the state holds. */
  live: Map<string, number>;
  /** Keys this instance deleted, with the revision deleted: an older value arriving late is ignored. */
  dead: Map<string, number>;
  /** Every change under the filter up to this revision has been applied. */
  applied: number;
  /** The revision of the last message under the filter, when known exactly (see the header). */
  tip?: number;
  /**
   * The newest revision under the filter this instance has read or written, once a load told
   * it where the filter stood: the tip again after each read.
   */
  seen?: number;
  /** Counts the writes that set the tip or made it unknown, so that a read in flight meanwhile leaves it be. */
  tipChanges: number;
  /** The newest revision this instance wrote under the filter (Infinity: a write whose revision is unknown). */
  ownMax: number;
  /** performance.now() when the last write that proved the state was sent. */
  provenAt?: number;
  /** Clock ms when a write of another instance was last seen here (-Infinity: never). */
  foreignAt: number;
  /** The conditioned write in flight, which the next one waits for. */
  writing?: Promise<void>;
  /**
   * Keys this instance is writing (either way), by writes in flight until applied here: a read
   * may bring them before their acknowledgement, and a condition they break is not another
   * instance's doing.
   */
  writingKeys: Map<string, number>;
  loaded: boolean;
  readAt: number;
  /** Bytes of the keys' bookkeeping (see KEY_OVERHEAD_BYTES), kept as keys come and go. */
  keyBytes: number;
  /** Bytes counted in the cache's total; `dirty` when the state changed since. */
  counted: number;
  dirty: boolean;
  running?: Promise<void>;
  queued?: Promise<void>;
}

const noop = () => {};

export class GroupCache<S> {
  private readonly groups = new Map<string, Group<S>>();
  private total = 0;
  /** Highest revision this instance saw the bucket reach: every read that began after it sees it. */
  private head = 0;

  constructor(private readonly o: GroupCacheOptions<S>) {
    if (!o.kv.snapshot || !o.kv.changes) throw new Error(`${o.name}: the KV bucket ${o.kv.bucket} cannot read groups of keys`);
  }

  /** Groups held and the bytes they take. */
  stats(): { groups: number; bytes: number } {
    return { groups: this.groups.size, bytes: this.total };
  }

  /**
   * The group's state, loaded or brought up to date with the bucket first (see the header).
   * `since` (performance.now() when the caller's request began): when a write sent after it
   * proved the state current, no read is needed.
   */
  async use(name: string, since?: number): Promise<S> {
    let g = this.groups.get(name);
    if (g && !g.running && this.o.clock.now() - g.readAt > (this.o.staleAfterMs ?? STALE_AFTER_MS)) {
      this.drop(g);
      g = undefined;
    }
    if (g?.loaded && !g.running && since !== undefined && g.provenAt !== undefined && g.provenAt > since) {
      this.keep(g);
      return g.state;
    }
    if (!g) {
      g = this.create(name);
      this.groups.set(name, g);
    }
    try {
      await this.read(g);
    } catch (err) {
      if (this.groups.get(name) === g) this.drop(g);
      this.o.log.warn(`${this.o.name}: reading from the bucket failed; loading again on next use`, { group: name, error: (err as Error).message });
      throw err;
    }
    this.keep(g);
    return g.state;
  }

  /** The group's state if held and loaded, without reading the bucket. */
  peek(name: string): S | undefined {
    const g = this.groups.get(name);
    return g?.loaded ? g.state : undefined;
  }

  /**
   * True when a write to the group would be conditioned and, if it succeeds, prove the state
   * (see the header): the group is held, its tip known, and no other instance wrote to it lately.
   */
  provable(name: string): boolean {
    const g = this.groups.get(name);
    return !!g && this.canProve(g);
  }

  /**
   * True when the group is held and no other instance was seen writing to it lately: its next
   * write proves it (provable), or, made before a read, lets that read learn the tip so that
   * the one after does. (A read alongside one of this instance's writes cannot: the write may
   * land after the read.)
   */
  quiet(name: string): boolean {
    const g = this.groups.get(name);
    return this.o.proofs !== false && !!g && g.loaded && this.o.clock.now() - g.foreignAt >= CONTENDED_MS;
  }

  private canProve(g: Group<S>): boolean {
    return this.o.proofs !== false && g.loaded && g.tip !== undefined && this.o.clock.now() - g.foreignAt >= CONTENDED_MS && this.groups.get(g.name) === g;
  }

  /**
   * Writes `key` of the group (value null: deletes it) through `op` and applies it to the
   * state. `op` gets the condition when the write can prove the state (see the header), and
   * must then write under it alone; without one it makes the write as the caller means it
   * (a compare-and-set on `expected`, say). `expected`: the key's revision the write is
   * meant for (0: absent); a conditioned write checks it against the state, which is current.
   * Throws a KV conflict when the key is not at `expected`.
   */
  async write(name: string, key: string, value: Uint8Array | null, op: (within?: Within) => Promise<number | void>, expected?: number): Promise<number | void> {
    const g = this.groups.get(name);
    if (!g || !this.canProve(g)) return this.plainWrite(name, key, value, op);
    const before = g.writing;
    let done!: () => void;
    const mine = (g.writing = new Promise<void>((r) => (done = r)));
    try {
      await before;
      for (;;) {
        if (!this.canProve(g)) return await this.plainWrite(name, key, value, op);
        const held = g.live.get(key) ?? 0;
        if (expected !== undefined && held !== expected) throw new KvConflictError(`${key}: at revision ${held}, not ${expected}`);
        const sent = performance.now();
        const changes = g.tipChanges;
        const untrack = this.track(g, key);
        try {
          const revision = (await op({ filter: this.o.filter(name), last: g.tip! })) as number;
          this.proved(g, key, value, revision, sent);
          return revision;
        } catch (err) {
          untrack();
          const last = isKvConflict(err) ? (err as KvConflictError).last : undefined;
          // Only expiries since the tip: nothing new, the state holds.
          if (last !== undefined && g.tip !== undefined && last < g.tip) {
            g.tip = g.seen = last;
            continue;
          }
          // Something else was written under the filter: by another instance, unless one of
          // this instance's unconditioned writes was in flight or ended meanwhile.
          if (last !== undefined && g.writingKeys.size === 0 && g.tipChanges === changes) g.foreignAt = this.o.clock.now();
          g.tip = undefined;
          g.tipChanges++;
          if (last === undefined) throw err;
          // The write is made as the caller means it.
          return await this.plainWrite(name, key, value, op);
        } finally {
          untrack();
        }
      }
    } finally {
      done();
      if (g.writing === mine) g.writing = undefined;
    }
  }

  /**
   * An unconditioned write of `key` (value null: a deletion) made by `op`, applied like any
   * write of this instance; the group's tip is unknown until its next read.
   */
  async plainWrite(name: string, key: string, value: Uint8Array | null, op: (within?: Within) => Promise<number | void>): Promise<number | void> {
    if (value === null) this.deleted(name, key);
    const g = this.groups.get(name);
    if (g) {
      g.tip = undefined;
      g.tipChanges++;
    }
    const untrack = g ? this.track(g, key) : noop;
    try {
      const revision = await op(undefined);
      if (value !== null) this.wrote(name, { key, value, revision: revision as number });
      else if (g) {
        g.tip = undefined;
        g.tipChanges++;
        g.ownMax = Math.max(g.ownMax, typeof revision === "number" ? revision : Infinity);
        // Its marker, met by a later read, is this instance's own.
        if (typeof revision === "number" && !g.live.has(key)) g.dead.set(key, Math.max(g.dead.get(key) ?? 0, revision));
      }
      return revision;
    } finally {
      untrack();
    }
  }

  /** Counts a write of `key` in writingKeys until the function returned is called (once it is applied). */
  private track(g: Group<S>, key: string): () => void {
    g.writingKeys.set(key, (g.writingKeys.get(key) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = g.writingKeys.get(key)! - 1;
      if (n === 0) g.writingKeys.delete(key);
      else g.writingKeys.set(key, n);
    };
  }

  /** A conditioned write went through: the state plus it is the bucket's as of `revision`. */
  private proved(g: Group<S>, key: string, value: Uint8Array | null, revision: number, sent: number): void {
    if (value === null) {
      if (this.unlive(g, key)) this.o.apply(g.state, key, null);
      // A read in flight may still bring an older value of the key: its next settle clears this.
      g.dead.set(key, revision);
      g.dirty = true;
    } else {
      this.change(g, key, { key, value, revision }, revision);
    }
    g.tip = g.seen = revision;
    g.tipChanges++;
    g.ownMax = Math.max(g.ownMax, revision);
    g.applied = Math.max(g.applied, revision);
    this.head = Math.max(this.head, revision);
    g.readAt = this.o.clock.now();
    g.provenAt = sent;
    this.keep(g);
  }

  /** A value this instance wrote without a condition, with the revision the bucket gave it. */
  wrote(name: string, entry: KvEntry): void {
    this.head = Math.max(this.head, entry.revision);
    const g = this.groups.get(name);
    if (!g) return;
    // Whether anything else came between is unknown until the next read.
    g.tip = undefined;
    g.tipChanges++;
    g.ownMax = Math.max(g.ownMax, entry.revision);
    this.change(g, entry.key, entry, entry.revision);
    this.keep(g);
  }

  /** A key this instance deleted: gone from the group at once. */
  deleted(name: string, key: string): void {
    const g = this.groups.get(name);
    const held = g?.live.get(key);
    if (!g || held === undefined) return;
    this.unlive(g, key);
    g.dead.set(key, held);
    this.o.apply(g.state, key, null);
    g.dirty = true;
    this.keep(g);
  }

  /** Forgets every group. */
  clear(): void {
    this.groups.clear();
    this.total = 0;
  }

  private create(name: string): Group<S> {
    return { name, state: this.o.empty(name), live: new Map(), dead: new Map(), applied: 0, tipChanges: 0, ownMax: 0, foreignAt: -Infinity, writingKeys: new Map(), loaded: false, readAt: 0, keyBytes: 0, counted: 0, dirty: true };
  }

  /** One read at a time per group; a caller arriving during one joins the next. */
  private read(g: Group<S>): Promise<void> {
    if (!g.running) {
      g.running = (g.loaded ? this.check(g) : this.load(g)).finally(() => {
        g.running = undefined;
      });
      return g.running;
    }
    g.queued ??= g.running.then(noop, noop).then(() => {
      g.queued = undefined;
      return this.read(g);
    });
    return g.queued;
  }

  private async load(g: Group<S>): Promise<void> {
    const head = this.head;
    const mark = this.mark(g);
    const snap = await this.o.kv.snapshot!(this.o.filter(g.name));
    for (const e of snap.entries) this.change(g, e.key, e, e.revision);
    this.settle(g, Math.max(snap.revision, head));
    g.seen = snap.last;
    this.readTip(g, mark, snap.last);
    g.loaded = true;
  }

  /** What a read must know of this instance's own writes when it begins (readTip). */
  private mark(g: Group<S>): { tipChanges: number; quiet: boolean } {
    return { tipChanges: g.tipChanges, quiet: !this.busy(g) };
  }

  /** True when none of this instance's writes was in flight or ended during the read that began at `mark`. */
  private alone(g: Group<S>, mark: { tipChanges: number; quiet: boolean }): boolean {
    return mark.quiet && g.tipChanges === mark.tipChanges && !this.busy(g);
  }

  /** True while a write of this instance to the group is in flight or queued. */
  private busy(g: Group<S>): boolean {
    return g.writingKeys.size > 0 || g.writing !== undefined;
  }

  /**
   * The tip after a read that began at `mark` and found the filter's last at `newest`: that,
   * unless this instance's own writes during the read may have landed after it (then the tip
   * stays unknown, or stays the one a proving write set when newer).
   */
  private readTip(g: Group<S>, mark: { tipChanges: number; quiet: boolean }, newest: number | undefined): void {
    if (newest === undefined) return;
    if (this.alone(g, mark)) {
      g.tip = newest;
      g.ownMax = Math.min(g.ownMax, newest);
    } else if (!this.busy(g) && g.ownMax <= newest) g.tip = newest;
    else if (g.tip !== undefined && g.tipChanges !== mark.tipChanges) g.tip = Math.max(g.tip, newest);
  }

  private async check(g: Group<S>): Promise<void> {
    const head = this.head;
    // What this instance had seen when the read began: its own writes that land while the read
    // is in flight may come after the read's cut, with another instance's write in between.
    const before = g.seen;
    const mark = this.mark(g);
    const r = await this.o.kv.changes!(this.o.filter(g.name), g.applied);
    if (r === null) {
      // Too much changed to list (or the group's last keys vanished): read it whole again.
      Object.assign(g, { state: this.o.empty(g.name), live: new Map(), dead: new Map(), applied: 0, tip: undefined, seen: undefined, loaded: false, keyBytes: 0, dirty: true });
      g.foreignAt = this.o.clock.now();
      return this.load(g);
    }
    let foreign = false;
    let newest = before;
    for (const c of r.changes) {
      // A change not applied yet is another instance's, unless this instance is writing that
      // key (its value may come back before its acknowledgement).
      if (this.change(g, c.key, c.entry, c.revision) && !g.writingKeys.has(c.key)) foreign = true;
      if (newest !== undefined) newest = Math.max(newest, c.revision);
    }
    if (foreign) g.foreignAt = this.o.clock.now();
    // Every message under the filter after `applied` came back: the newest is the filter's last.
    this.readTip(g, mark, newest);
    this.settle(g, Math.max(r.revision, head));
  }

  /** Records that every change up to `revision` is applied. */
  private settle(g: Group<S>, revision: number): void {
    g.applied = Math.max(g.applied, revision);
    this.head = Math.max(this.head, g.applied);
    g.readAt = this.o.clock.now();
    // No later read returns a revision this old: the tombstones have done their job.
    for (const [k, rev] of g.dead) if (rev <= g.applied) g.dead.delete(k);
  }

  /** Applies one key's value (null: deleted) at `revision` if it is newer than what the group has; true when it was. */
  private change(g: Group<S>, key: string, entry: KvEntry | null, revision: number): boolean {
    if (g.seen !== undefined && revision > g.seen) g.seen = revision;
    if (revision <= (g.live.get(key) ?? g.dead.get(key) ?? 0)) return false;
    g.dirty = true;
    if (entry === null) {
      if (this.unlive(g, key)) this.o.apply(g.state, key, null);
      return true;
    }
    g.dead.delete(key);
    if (!g.live.has(key)) g.keyBytes += KEY_OVERHEAD_BYTES + key.length;
    g.live.set(key, revision);
    try {
      this.o.apply(g.state, key, entry);
    } catch {
      // The value is not quoted: it may be anything, of any size.
      this.o.log.warn(`${this.o.name}: unreadable entry skipped`, { key });
    }
    return true;
  }

  /** Forgets that the group holds `key`; false when it did not. */
  private unlive(g: Group<S>, key: string): boolean {
    if (!g.live.delete(key)) return false;
    g.keyBytes -= KEY_OVERHEAD_BYTES + key.length;
    return true;
  }

  /** Marks the group most recently used, counts its bytes, and evicts what is over the limits. */
  private keep(g: Group<S>): void {
    if (this.groups.get(g.name) !== g) return;
    this.groups.delete(g.name);
    this.groups.set(g.name, g);
    if (g.dirty) {
      const bytes = this.o.bytes(g.state) + g.keyBytes;
      this.total += bytes - g.counted;
      g.counted = bytes;
      g.dirty = false;
    }
    if (!this.o.keepEmpty && g.loaded && !g.running && g.live.size === 0) return this.drop(g);
    for (const old of this.groups.values()) {
      // The group in use stays, even alone above the limit: a channel larger than the whole
      // cache would otherwise be loaded again on every use.
      if (old === g || (this.groups.size <= this.o.maxGroups && this.total <= this.o.maxBytes)) break;
      this.drop(old);
    }
  }

  private drop(g: Group<S>): void {
    if (this.groups.get(g.name) !== g) return;
    this.groups.delete(g.name);
    this.total -= g.counted;
    g.counted = 0;
    g.dirty = true;
  }
}
