// The limiter's bucket as the limiter sees it, with one difference: a channel's rate-limit
// document (lib/limiter's key `c.<channel>`) is stored among the channel's memory keys, as
// `l.<channel>.doc` in the memory bucket. Writing it then proves the channel's memory current
// (lib/kv/group-cache.ts): the admission of a chat, which writes that document anyway, tells
// whether any instance wrote to the channel since this one read it, so the chat needs no
// read of its memory. Every other key goes to the limits bucket unchanged.
//
// The document is read from the cached channel when the channel is held (brought up to date
// first: the limiter reads only keys it does not know or that moved), else as one key. It
// carries the limits bucket's max age as its TTL, so it goes as it did there.
//
// Documents written where they were before (`c.<channel>` in the limits bucket) move on first
// read: copied here once (create-once: the first copy wins), then deleted there.
import type { Logger } from "../context/types";
import { isKvConflict, type Kv, type KvEntry } from "../kv";
import type { Store } from "./store";

/** The memory key of a channel's document, from the limiter's `c.<channel>`; undefined for other keys. */
const docKey = (k: string) => (k.startsWith("c.") && k.indexOf(".", 2) < 0 ? `l.${k.slice(2)}.doc` : undefined);

/** The limiter's bucket with channel documents in the memory (see the header). */
export function channelLimits(store: Store, limits: Kv, ttlSeconds: number, log: Logger): Kv {
  const opts = { ttlSeconds };
  const as = (k: string, e: KvEntry | undefined | null): KvEntry | null => (e ? { key: k, value: e.value, revision: e.revision } : null);

  /** The document where it is kept now, the channel brought up to date first when held. */
  async function current(k: string, mk: string): Promise<KvEntry | null> {
    const encoded = k.slice(2);
    if (store.cachedChannel(encoded)) return as(k, (await store.channel(encoded)).limits);
    return as(k, await store.kv.get(mk));
  }

  /** Moves a document from the limits bucket, if one is there (see the header). */
  async function moved(k: string, mk: string, old: KvEntry | null): Promise<KvEntry | null> {
    if (!old) return null;
    try {
      const revision = await store.writeRaw(mk, old.value, 0, opts);
      store.background("moving a channel's limits document", limits.delete(k).then(() => undefined));
      return { key: k, value: old.value, revision };
    } catch (err) {
      if (!isKvConflict(err)) throw err;
      // Another instance moved it first.
      log.debug("channel limits document moved by another instance", { key: mk });
      return current(k, mk);
    }
  }

  return {
    bucket: limits.bucket,
    keys: (f) => limits.keys(f),
    ...(limits.scan && { scan: limits.scan.bind(limits) }),
    async get(k) {
      const mk = docKey(k);
      if (!mk) return limits.get(k);
      // A channel not held: both places are asked at once, so a move costs no round trip more.
      const held = !!store.cachedChannel(k.slice(2));
      const [now, old] = await Promise.all([current(k, mk), held ? undefined : limits.get(k)]);
      return now ?? moved(k, mk, old === undefined ? await limits.get(k) : old);
    },
    put: (k, v, o) => {
      const mk = docKey(k);
      return mk ? store.writeRaw(mk, v, undefined, opts) : limits.put(k, v, o);
    },
    create: (k, v, o) => {
      const mk = docKey(k);
      return mk ? store.writeRaw(mk, v, 0, opts) : limits.create(k, v, o);
    },
    update: (k, v, revision, o) => {
      const mk = docKey(k);
      return mk ? store.writeRaw(mk, v, revision, opts) : limits.update(k, v, revision, o);
    },
    delete: (k, o) => {
      const mk = docKey(k);
      return mk ? store.remove(mk) : limits.delete(k, o);
    },
  };
}
