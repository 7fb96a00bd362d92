// A Kv of JSON documents with a known shape per key. A stored value that is not JSON, or
// not of its key's shape (written by hand, by a bug, by another program), reads as absent
// and is logged once per key — the key, never the value — and `create` overwrites it as it
// would an absent key, so the next write of the document repairs it. The limiter and the
// usage counters read their buckets through it: one bad document costs a warning, not every
// request that touches it.
import type { z } from "zod";
import type { Logger } from "../context/types";
import { isKvConflict, type Kv, type KvEntry } from "./types";

/** Keys already reported, so a document read on every request is logged once (bounded). */
const REPORTED_MAX = 1_000;

const dec = new TextDecoder();

/** Why a stored value does not fit `schema`, or null when it does. */
function defect(e: KvEntry, schema: z.ZodType): string | null {
  let value: unknown;
  try {
    value = JSON.parse(dec.decode(e.value));
  } catch {
    return "not JSON";
  }
  const r = schema.safeParse(value);
  return r.success ? null : `not a valid document (${r.error.issues[0]?.path.join(".") || "root"})`;
}

/** `kv`, with values checked against `schemaFor(key)` (see the header). */
export function checkedKv(kv: Kv, schemaFor: (key: string) => z.ZodType, log: Logger): Kv {
  const reported = new Set<string>();
  /** The entry, or null when it is absent or malformed (logging the first time). */
  const check = (key: string, e: KvEntry | null): KvEntry | null => {
    const why = e && defect(e, schemaFor(key));
    if (!why) return e;
    if (!reported.has(key)) {
      if (reported.size >= REPORTED_MAX) reported.clear();
      reported.add(key);
      log.warn("malformed stored value read as absent", { bucket: kv.bucket, key, defect: why });
    }
    return null;
  };
  return {
    bucket: kv.bucket,
    get: async (key) => check(key, await kv.get(key)),
    put: (key, value, opts) => kv.put(key, value, opts),
    async create(key, value, opts) {
      try {
        return await kv.create(key, value, opts);
      } catch (err) {
        if (!isKvConflict(err)) throw err;
        const cur = await kv.get(key);
        if (!cur || check(key, cur)) throw err;
        return kv.update(key, value, cur.revision, opts);
      }
    },
    update: (key, value, revision, opts) => kv.update(key, value, revision, opts),
    delete: (key) => kv.delete(key),
    keys: (filter) => kv.keys(filter),
  };
}
