// Adapts a nats.js JetStream KV bucket to lib/kv's Kv interface, turning the server's
// "wrong last sequence" (API error 10071) into KvConflictError.
import type { KV, KvEntry as NatsKvEntry } from "nats";
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

export function natsKv(kv: KV, bucket: string): Kv {
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
