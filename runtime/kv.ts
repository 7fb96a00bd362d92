// Adapts a nats.js JetStream KV bucket to lib/kv's Kv interface, turning the server's
// "wrong last sequence" (API error 10071) into KvConflictError.
import type { JetStreamManager, KV, KvEntry as NatsKvEntry } from "nats";
import { KvConflictError, type Kv, type KvEntry } from "../lib/kv";

/** True for JetStream's compare-and-set failure. */
export function isWrongLastSequence(err: unknown): boolean {
  const e = err as { api_error?: { err_code?: number }; message?: string } | null;
  return e?.api_error?.err_code === 10071 || /wrong last sequence/i.test(e?.message ?? "");
}

const live = (e: NatsKvEntry | null): e is NatsKvEntry => !!e && e.operation === "PUT";

async function cas<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (isWrongLastSequence(err)) throw new KvConflictError((err as Error).message);
    throw err;
  }
}

/**
 * Keys under a filter from the bucket stream's subject list: one JetStream API request (paged
 * by the client), where nats.js's `kv.keys()` runs an ordered consumer that was seen to stop
 * early under load and return a partial list. The subject list still holds keys whose last
 * operation was a delete; every caller reads the key afterwards and skips those.
 */
async function listKeys(jsm: JetStreamManager, bucket: string, filter: string): Promise<string[]> {
  const prefix = `$KV.${bucket}.`;
  const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: prefix + filter });
  return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
}

/** The Kv for a nats.js bucket; with `jsm`, key listing uses the stream's subject list (see listKeys). */
export function natsKv(kv: KV, bucket: string, jsm?: JetStreamManager): Kv {
  return {
    bucket,
    async get(key) {
      const e = await kv.get(key);
      return live(e) ? { key, value: e.value, revision: e.revision } : null;
    },
    put: (key, value) => kv.put(key, value),
    create: (key, value) => cas(() => kv.create(key, value)),
    update: (key, value, revision) => cas(() => kv.update(key, value, revision)),
    async delete(key) {
      await kv.delete(key);
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
