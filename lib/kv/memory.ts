// An in-memory Kv with the same compare-and-set semantics as a JetStream bucket,
// for unit tests of everything built on Kv. Keys written with a TTL expire by its clock
// (checked at each operation), and watchers hear of it as of a delete, as the server's
// markers tell a real watch.
import type { Clock } from "../context/types";
import { KvConflictError, type Kv, type KvChange, type KvEntry, type KvPutOptions, type KvWriteOptions, type Within } from "./types";

/** True when a subject-style filter (`*` one token, `>` the rest) matches a key. */
export function matchesFilter(filter: string, key: string): boolean {
  const f = filter.split(".");
  const k = key.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return k.length > i;
    if (i >= k.length) return false;
    if (f[i] !== "*" && f[i] !== k[i]) return false;
  }
  return f.length === k.length;
}

export class MemoryKv implements Kv {
  private readonly data = new Map<string, KvEntry>();
  private readonly watchers = new Set<{ filter: string; fn: (k: string, e: KvEntry | null) => void }>();
  /** Keys written with a TTL, and when they expire (clock ms). */
  private readonly deadlines = new Map<string, number>();
  private seq = 0;
  /** Revision of each deleted key's deletion, as a bucket's delete marker has one. */
  private readonly deleted = new Map<string, number>();
  /** Counts operations, so tests can assert how many round trips a path costs. */
  readonly ops = { get: 0, put: 0, create: 0, update: 0, delete: 0, keys: 0, snapshot: 0, changes: 0, scan: 0 };

  constructor(
    readonly bucket = "TEST",
    private readonly clock: Clock = { now: () => Date.now() },
  ) {}

  async get(key: string): Promise<KvEntry | null> {
    this.ops.get++;
    this.expire();
    const e = this.data.get(key);
    return e ? { ...e, value: e.value.slice() } : null;
  }

  async put(key: string, value: Uint8Array, opts?: KvPutOptions): Promise<number> {
    this.ops.put++;
    this.expire();
    this.check(opts?.within);
    return this.write(key, value, opts);
  }

  async create(key: string, value: Uint8Array, opts?: KvWriteOptions): Promise<number> {
    this.ops.create++;
    this.expire();
    if (this.data.has(key)) throw new KvConflictError(`key exists: ${key}`);
    return this.write(key, value, opts);
  }

  async update(key: string, value: Uint8Array, revision: number, opts?: KvWriteOptions): Promise<number> {
    this.ops.update++;
    this.expire();
    const cur = this.data.get(key);
    if (!cur || cur.revision !== revision) throw new KvConflictError(`wrong last sequence for ${key}`);
    return this.write(key, value, opts);
  }

  async delete(key: string, opts?: Pick<KvPutOptions, "within">): Promise<number | void> {
    this.ops.delete++;
    this.expire();
    this.check(opts?.within);
    this.remove(key);
    // A bucket writes a marker even for an absent key: so does this one.
    if (!this.deleted.has(key)) this.deleted.set(key, ++this.seq);
    return this.deleted.get(key);
  }

  async keys(filter = ">"): Promise<string[]> {
    this.ops.keys++;
    this.expire();
    return [...this.data.keys()].filter((k) => matchesFilter(filter, k));
  }

  async watch(filter: string, onChange: (key: string, entry: KvEntry | null) => void): Promise<() => void> {
    this.expire();
    for (const [k, e] of this.data) if (matchesFilter(filter, k)) onChange(k, { ...e });
    const w = { filter, fn: onChange };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  async snapshot(filter: string): Promise<{ entries: KvEntry[]; revision: number; last: number }> {
    this.ops.snapshot++;
    this.expire();
    const entries = [...this.data.values()].filter((e) => matchesFilter(filter, e.key)).map((e) => ({ ...e, value: e.value.slice() }));
    return { entries, revision: this.seq, last: this.lastUnder(filter) };
  }

  /** The revision of the last write or deletion under `filter` (0: none). */
  private lastUnder(filter: string): number {
    let last = 0;
    for (const e of this.data.values()) if (e.revision > last && matchesFilter(filter, e.key)) last = e.revision;
    for (const [k, rev] of this.deleted) if (rev > last && matchesFilter(filter, k)) last = rev;
    return last;
  }

  /** Refuses a write whose `within` condition no longer holds, as the server does. */
  private check(within: Within | undefined): void {
    if (!within) return;
    const last = this.lastUnder(within.filter);
    if (last !== within.last) throw new KvConflictError(`wrong last sequence: ${last}`, last);
  }

  async changes(filter: string, after: number): Promise<{ changes: KvChange[]; revision: number }> {
    this.ops.changes++;
    this.expire();
    return { changes: this.since(filter, after), revision: this.seq };
  }

  async scan(filter: string, from: number, max: number): Promise<{ changes: KvChange[]; more: boolean }> {
    this.ops.scan++;
    this.expire();
    const all = this.since(filter, from - 1);
    return { changes: all.slice(0, max), more: all.length > max };
  }

  /** Every key's last write or deletion under `filter` after revision `after`, in revision order. */
  private since(filter: string, after: number): KvChange[] {
    const out: KvChange[] = [];
    for (const e of this.data.values()) {
      if (e.revision > after && matchesFilter(filter, e.key)) out.push({ key: e.key, entry: { ...e, value: e.value.slice() }, revision: e.revision });
    }
    for (const [key, revision] of this.deleted) {
      if (revision > after && matchesFilter(filter, key)) out.push({ key, entry: null, revision });
    }
    return out.sort((a, b) => a.revision - b.revision);
  }

  private write(key: string, value: Uint8Array, opts?: KvWriteOptions): number {
    const ttl = opts?.ttlSeconds;
    if (ttl !== undefined && !(Number.isInteger(ttl) && ttl >= 1)) throw new Error(`invalid TTL for ${key}: ${ttl} (whole seconds ≥ 1)`);
    this.deleted.delete(key);
    const entry = { key, value: value.slice(), revision: ++this.seq };
    this.data.set(key, entry);
    if (ttl === undefined) this.deadlines.delete(key);
    else this.deadlines.set(key, this.clock.now() + ttl * 1000);
    this.notify(key, entry);
    return entry.revision;
  }

  private remove(key: string): void {
    this.deadlines.delete(key);
    if (!this.data.delete(key)) return;
    this.deleted.set(key, ++this.seq);
    this.notify(key, null);
  }

  /** Removes the keys whose TTL has run out. */
  private expire(): void {
    if (this.deadlines.size === 0) return;
    const now = this.clock.now();
    for (const [key, at] of this.deadlines) if (at <= now) this.remove(key);
  }

  private notify(key: string, entry: KvEntry | null): void {
    for (const w of this.watchers) if (matchesFilter(w.filter, key)) w.fn(key, entry && { ...entry });
  }
}
