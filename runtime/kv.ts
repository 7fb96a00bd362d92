// Adapts a nats.js JetStream KV bucket to lib/kv's Kv interface, turning the server's
// "wrong last sequence" (API error 10071) into KvConflictError and a write refused for
// space into a `storage_full` error naming the setting to raise. Markers of removed or
// expired keys (the server's are empty PUTs to nats.js 2.29) read as absent.
import type { JetStreamManager, KV, KvEntry as NatsKvEntry } from "nats";
import { KvConflictError, type Kv, type KvEntry, type KvPutOptions } from "../lib/kv";
import { isMarker, type TtlKV } from "./provision";
import { isStorageFull, storageFullError } from "./storage";

/** True for JetStream's compare-and-set failure. */
export function isWrongLastSequence(err: unknown): boolean {
  const e = err as { api_error?: { err_code?: number }; message?: string } | null;
  return e?.api_error?.err_code === 10071 || /wrong last sequence/i.test(e?.message ?? "");
}

const live = (e: NatsKvEntry | null): e is NatsKvEntry => !!e && !isMarker(e);

/** Runs a write of `bucket`, translating a CAS conflict and a full stream. */
async function writing<T>(bucket: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (isWrongLastSequence(err)) {
      const found = /wrong last sequence: (\d+)/i.exec((err as Error).message)?.[1];
      throw new KvConflictError((err as Error).message, found === undefined ? undefined : Number(found));
    }
    if (isStorageFull(err)) throw storageFullError(bucket, err);
    throw err;
  }
}

/**
 * Keys under a filter from the bucket stream's subject list: one JetStream API request (paged
 * by the client), where nats.js's `kv.keys()` runs an ordered consumer that was seen to stop
 * early under load and return a partial list. The subject list still holds a deleted or
 * expired key until its marker expires; every caller reads the key afterwards and skips those.
 */
async function listKeys(jsm: JetStreamManager, bucket: string, filter: string): Promise<string[]> {
  const prefix = `$KV.${bucket}.`;
  const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: prefix + filter });
  return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
}

/**
 * The Kv for a nats.js bucket; with `jsm`, key listing uses the stream's subject list (see
 * listKeys). Writes with a TTL need a handle from provisionBuckets (leaderTolerant).
 */
export function natsKv(kv: KV, bucket: string, jsm?: JetStreamManager): Kv {
  const ttlKv = kv as TtlKV;
  /** The write options for the handle, refusing a TTL a plain nats.js handle would silently drop. */
  const options = (opts?: KvPutOptions) => {
    if (opts?.ttlSeconds === undefined && opts?.within === undefined) return undefined;
    if (ttlKv.ttlWrites !== true) throw new Error(`${bucket}: this bucket handle cannot write a TTL or within a filter (open it with provisionBuckets)`);
    return opts;
  };
  return {
    bucket,
    async get(key) {
      const e = await kv.get(key);
      return live(e) ? { key, value: e.value, revision: e.revision } : null;
    },
    put: (key, value, opts) => writing(bucket, () => ttlKv.put(key, value, options(opts))),
    create: (key, value, opts) => writing(bucket, () => ttlKv.create(key, value, options(opts))),
    update: (key, value, revision, opts) => writing(bucket, () => ttlKv.update(key, value, revision, options(opts))),
    // A handle from provisionBuckets returns the marker's revision (nats.js's own returns nothing).
    async delete(key, opts) {
      if (opts?.within && ttlKv.ttlWrites !== true) throw new Error(`${bucket}: this bucket handle cannot write within a filter (open it with provisionBuckets)`);
      return writing(bucket, () => (kv.delete as unknown as (k: string, o?: object) => Promise<number | void>)(key, opts));
    },
    async keys(filter = ">") {
      if (jsm) return listKeys(jsm, bucket, filter);
      const out: string[] = [];
      for await (const k of await kv.keys(filter)) out.push(k);
      return out;
    },
    async watch(filter, onChange) {
      const it = await kv.watch({ key: filter });
      void (async () => {
        for await (const e of it) {
          onChange(e.key, live(e) ? ({ key: e.key, value: e.value, revision: e.revision } satisfies KvEntry) : null);
        }
      })();
      return () => it.stop();
    },
  };
}
