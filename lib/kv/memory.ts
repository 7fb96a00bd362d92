// An in-memory Kv with the same compare-and-set semantics as a JetStream bucket,
// for unit tests of everything built on Kv.
import { KvConflictError, type Kv, type KvChange, type KvEntry } from "./types";

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
  private seq = 0;
  /** Revision of each deleted key's deletion, as a bucket's delete marker has one. */
  private readonly deleted = new Map<string, number>();
  /** Counts operations, so tests can assert how many round trips a path costs. */
  readonly ops = { get: 0, put: 0, create: 0, update: 0, delete: 0, keys: 0, snapshot: 0, changes: 0 };

  constructor(readonly bucket = "TEST") {}

  async get(key: string): Promise<KvEntry | null> {
    this.ops.get++;
    const e = this.data.get(key);
    return e ? { ...e, value: e.value.slice() } : null;
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    this.ops.put++;
    return this.write(key, value);
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    this.ops.create++;
    if (this.data.has(key)) throw new KvConflictError(`key exists: ${key}`);
    return this.write(key, value);
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    this.ops.update++;
    const cur = this.data.get(key);
    if (!cur || cur.revision !== revision) throw new KvConflictError(`wrong last sequence for ${key}`);
    return this.write(key, value);
  }

  async delete(key: string): Promise<void> {
    this.ops.delete++;
    if (!this.data.delete(key)) return;
    this.deleted.set(key, ++this.seq);
    this.notify(key, null);
  }

  async keys(filter = ">"): Promise<string[]> {
    this.ops.keys++;
    return [...this.data.keys()].filter((k) => matchesFilter(filter, k));
  }

  async watch(filter: string, onChange: (key: string, entry: KvEntry | null) => void): Promise<() => void> {
    for (const [k, e] of this.data) if (matchesFilter(filter, k)) onChange(k, { ...e });
    const w = { filter, fn: onChange };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  async snapshot(filter: string): Promise<{ entries: KvEntry[]; revision: number }> {
    this.ops.snapshot++;
    const entries = [...this.data.values()].filter((e) => matchesFilter(filter, e.key)).map((e) => ({ ...e, value: e.value.slice() }));
    return { entries, revision: this.seq };
  }

  async changes(filter: string, after: number): Promise<{ changes: KvChange[]; revision: number }> {
    this.ops.changes++;
    const out: KvChange[] = [];
    for (const e of this.data.values()) {
      if (e.revision > after && matchesFilter(filter, e.key)) out.push({ key: e.key, entry: { ...e, value: e.value.slice() }, revision: e.revision });
    }
    for (const [key, revision] of this.deleted) {
      if (revision > after && matchesFilter(filter, key)) out.push({ key, entry: null, revision });
    }
    return { changes: out.sort((a, b) => a.revision - b.revision), revision: this.seq };
  }

  private write(key: string, value: Uint8Array): number {
    this.deleted.delete(key);
    const entry = { key, value: value.slice(), revision: ++this.seq };
    this.data.set(key, entry);
    this.notify(key, entry);
    return entry.revision;
  }

  private notify(key: string, entry: KvEntry | null): void {
    for (const w of this.watchers) if (matchesFilter(w.filter, key)) w.fn(key, entry && { ...entry });
  }
}
