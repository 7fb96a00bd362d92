// The memory bucket and this instance's cache of the channels in use, with the writes that
// keep both in step, shared by history, summaries and facts.
//
// Reads: channel() brings the channel up to date with the bucket first (one round trip; a
// load when it is not cached), so every read sees what any instance stored before it began;
// none when a write of the channel made since the request began proved it current (the chat
// path's writes, see write below and lib/kv/group-cache.ts).
// Writes go to KV first and are then applied to the cached channel with the revision KV
// returned, so this instance reads its own writes at once; history keys (exchanges,
// summaries, claims) carry storage.history_ttl_days as their TTL. Background work (summaries,
// last_accessed touches, decay sweeps, embedding backfills) is tracked so settled() can wait for it and never
// ends as an unhandled rejection.
import { casUpdate, GroupCache, staleAfter, type CasResult, type Kv, type KvWriteOptions } from "../kv";
import { applyToChannel, channelFilter, emptyChannel, type ChannelState } from "./channel";
import type { MemoryOptions } from "./types";

const enc = new TextEncoder();
const bytes = (v: unknown) => enc.encode(JSON.stringify(v));
const MB = 1024 * 1024;

/** The encoded channel of a key (`<kind>.<channel>.<id>`). */
const channelOf = (k: string) => k.slice(k.indexOf(".") + 1, k.lastIndexOf("."));

export interface Store {
  kv: Kv;
  /**
   * The channel, up to date with the bucket (see the header); no read when a write sent
   * after `since` (performance.now()) proved it current (lib/kv/group-cache.ts).
   */
  channel(encoded: string, since?: number): Promise<ChannelState>;
  /** The channel if cached, without a round trip (for work that follows a read of it). */
  cachedChannel(encoded: string): ChannelState | undefined;
  /** True when no other instance wrote to the channel lately (GroupCache.quiet). */
  quiet(encoded: string): boolean;
  create(k: string, value: unknown): Promise<void>;
  /** create() on the chat path: a write that can prove the channel current (see write below). */
  append(k: string, value: unknown): Promise<void>;
  put(k: string, value: unknown): Promise<void>;
  /** Compare-and-set write: fails with a KV conflict when the key moved past `revision`. */
  update(k: string, value: unknown, revision: number): Promise<void>;
  remove(k: string): Promise<void>;
  /**
   * A stored value as given, for keys the memory does not interpret (a channel's rate-limit
   * document): a compare-and-set on `expected` (0: absent; undefined: none). Returns its revision.
   */
  writeRaw(k: string, value: Uint8Array, expected: number | undefined, opts?: KvWriteOptions): Promise<number>;
  /** casUpdate on a key of the bucket, applying what it wrote. */
  cas<T>(k: string, fn: (current: T | undefined) => { value: T | undefined; result: void }): Promise<CasResult<T | undefined, void>>;
  /** Runs work in the background, tracked by settled(), its failure logged. */
  background(what: string, p: Promise<unknown>): void;
  settled(): Promise<void>;
  cached(): { channels: number; bytes: number };
  close(): void;
}

export function createStore(opts: MemoryOptions): Store {
  const { kv, clock, log, config } = opts;
  const cache = new GroupCache<ChannelState>({
    kv,
    name: "memory",
    filter: channelFilter,
    empty: emptyChannel,
    apply: applyToChannel,
    bytes: (st) => st.bytes,
    maxGroups: config.memory.cache_channels,
    maxBytes: config.memory.cache_mb * MB,
    staleAfterMs: staleAfter(config.storage.marker_ttl_seconds),
    // A replicated bucket's conditions are not exact against writes in flight (GroupCache.proofs).
    proofs: config.replicas === 1,
    clock,
    log,
  });
  const pending = new Set<Promise<unknown>>();

  // Exchanges, summaries and claims expire by themselves; memories go by decay (facts.ts).
  const historyTtl: KvWriteOptions = { ttlSeconds: config.storage.history_ttl_days * 86_400 };
  const ttl = (k: string) => (k.startsWith("m.") ? undefined : historyTtl);

  /**
   * Every write is applied to the channel's group. The chat path's writes (`proving`: the
   * channel's rate-limit document, the exchange) are conditioned when they can prove the
   * channel current (then `expected` is checked against the cached channel); the others,
   * rare or in bulk (summaries, memories, touches, resets), are made as `plain` makes them, so
   * they never queue behind each other, and the channel's next use reads it.
   */
  const write = (k: string, value: Uint8Array | null, expected: number | undefined, o: KvWriteOptions | undefined, plain: () => Promise<number | void>, proving = false) =>
    proving
      ? cache.write(channelOf(k), k, value, (within) => (!within ? plain() : value ? kv.put(k, value, { ...o, within }) : kv.delete(k, { within })), expected)
      : cache.plainWrite(channelOf(k), k, value, plain);

  /** The bucket seen through the channels' groups, for casUpdate: its writes are the store's. */
  const grouped: Kv = {
    bucket: kv.bucket,
    get: (k) => kv.get(k),
    put: (k, e, o) => kv.put(k, e, o),
    delete: (k, o) => kv.delete(k, o),
    keys: (f) => kv.keys(f),
    create: (k, e, o) => write(k, e, 0, o, () => kv.create(k, e, o)) as Promise<number>,
    update: (k, e, revision, o) => write(k, e, revision, o, () => kv.update(k, e, revision, o)) as Promise<number>,
  };

  return {
    kv,
    channel: (encoded, since) => cache.use(encoded, since),
    cachedChannel: (encoded) => cache.peek(encoded),
    quiet: (encoded) => cache.quiet(encoded),
    async create(k, value) {
      const e = bytes(value);
      await write(k, e, 0, ttl(k), () => kv.create(k, e, ttl(k)));
    },
    async append(k, value) {
      const e = bytes(value);
      await write(k, e, 0, ttl(k), () => kv.create(k, e, ttl(k)), true);
    },
    async put(k, value) {
      const e = bytes(value);
      await write(k, e, undefined, ttl(k), () => kv.put(k, e, ttl(k)));
    },
    async update(k, value, revision) {
      const e = bytes(value);
      await write(k, e, revision, ttl(k), () => kv.update(k, e, revision, ttl(k)));
    },
    async remove(k) {
      await write(k, null, undefined, undefined, () => kv.delete(k));
    },
    async writeRaw(k, e, expected, o) {
      const plain = () => (expected === undefined ? kv.put(k, e, o) : expected === 0 ? kv.create(k, e, o) : kv.update(k, e, expected, o));
      return (await write(k, e, expected, o, plain, true)) as number;
    },
    cas: (k, fn) => casUpdate(grouped, k, fn),
    background(what, p) {
      const q = p.catch((err) => log.warn(`memory: ${what} failed`, { error: (err as Error).message }));
      pending.add(q);
      void q.finally(() => pending.delete(q));
    },
    async settled() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
    cached() {
      const s = cache.stats();
      return { channels: s.groups, bytes: s.bytes };
    },
    close: () => cache.clear(),
  };
}
