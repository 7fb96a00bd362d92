/** One stored value and the revision to compare-and-set against. */
export interface KvEntry {
  key: string;
  value: Uint8Array;
  revision: number;
}

/** A change under a filter: a key's new value, or its deletion (entry null), at a revision. */
export interface KvChange {
  key: string;
  entry: KvEntry | null;
  revision: number;
}

/**
 * Options of a write. `ttlSeconds` (a whole number ≥ 1: the server's granularity) makes the
 * key expire by itself that long after this write, unless written again before; a later
 * write without it keeps the key until the bucket's own max age.
 */
export interface KvWriteOptions {
  ttlSeconds?: number;
}

/**
 * The condition of a write that must find nothing new under a filter: the last message under
 * `filter` (any key, deletions included) must still be at revision `last` (0: none). The
 * key's own revision is then not checked: whoever holds every key under the filter as of
 * `last` checks it first. A write that succeeds proves that nothing else was written under
 * the filter between `last` and itself (lib/kv/group-cache.ts).
 */
export interface Within {
  filter: string;
  last: number;
}

/** Options of put and delete: a TTL (put), and the condition that nothing under a filter changed. */
export interface KvPutOptions extends KvWriteOptions {
  within?: Within;
}

/**
 * The part of a JetStream KV bucket the service uses. The runtime adapts the nats
 * client's bucket to it; tests use the in-memory bucket of ./memory.
 * `create` and `update` throw a KvConflictError when the key exists / moved on.
 * Values are never empty: an empty stored value is how the server marks a removed or
 * expired key, and reads as absent.
 */
export interface Kv {
  readonly bucket: string;
  get(key: string): Promise<KvEntry | null>;
  put(key: string, value: Uint8Array, opts?: KvPutOptions): Promise<number>;
  create(key: string, value: Uint8Array, opts?: KvWriteOptions): Promise<number>;
  update(key: string, value: Uint8Array, revision: number, opts?: KvWriteOptions): Promise<number>;
  /**
   * Removes a key. Its delete marker expires after a while, so deleted keys stop costing
   * anything. Returns the marker's revision when the bucket tells it. With `within`, it is
   * conditioned like a put.
   */
  delete(key: string, opts?: Pick<KvPutOptions, "within">): Promise<number | void>;
  /**
   * Keys matching a subject-style filter (`a.b.*`, `a.>`). May include keys deleted or
   * expired in the last minutes (their markers): callers read each key and skip the absent ones.
   */
  keys(filter?: string): Promise<string[]>;
  /**
   * Calls `onChange` for every current entry under `filter`, then for each later change
   * (value null = deleted). Returns a stop function. Optional: used by in-memory indexes.
   */
  watch?(filter: string, onChange: (key: string, entry: KvEntry | null) => void): Promise<() => void>;
  /**
   * Every live key under `filter` (deleted ones left out), as the bucket's leader holds them,
   * a revision up to which nothing under the filter is missing, and, when the read can tell,
   * `last`: the revision of the last message under the filter, deletions included (0: none;
   * what a `within` condition compares with). Optional: used by
   * caches that load a group of keys on demand (lib/kv/group-cache.ts).
   */
  snapshot?(filter: string): Promise<{ entries: KvEntry[]; revision: number; last?: number }>;
  /**
   * What changed under `filter` after revision `after`, as the bucket's leader holds it: the
   * changes in revision order and the revision they bring a reader to. Null when they are too
   * many to list (read a snapshot instead). One round trip; nothing when nothing changed.
   */
  changes?(filter: string, after: number): Promise<{ changes: KvChange[]; revision: number } | null>;
  /**
   * Up to `max` of the messages under `filter` at revision `from` or later, in revision order
   * (a deleted key's marker as entry null), and whether more follow. One round trip; a
   * message replaced since is gone, so a walk meets each key at most once, at its last write.
   * Optional: used by background walks of a whole bucket (lib/limiter/sweep.ts).
   */
  scan?(filter: string, from: number, max: number): Promise<{ changes: KvChange[]; more: boolean }>;
}

/**
 * Thrown when a create finds the key present, an update finds another revision, or a write
 * `within` a filter finds something newer under it. `last`: the revision the server found
 * instead, when it said (for a `within` write, the last message under the filter).
 */
export class KvConflictError extends Error {
  readonly kvConflict = true;
  constructor(
    message = "wrong last sequence",
    readonly last?: number,
  ) {
    super(message);
    this.name = "KvConflictError";
  }
}

/** True for a CAS conflict from either the in-memory bucket or the nats adapter. */
export function isKvConflict(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { kvConflict?: unknown }).kvConflict === true;
}
