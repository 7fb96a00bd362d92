// Compare-and-set on one JSON document, starting from a read the caller already made
// (the limiter reads all its keys concurrently first, decides, and only then writes).
import { isKvConflict, type Kv } from "../kv";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A parsed document and the revision it was read at (0 = absent). */
export interface Doc<T> {
  value: T | undefined;
  revision: number;
}

/** Reads a JSON document; absent keys read as `{ value: undefined, revision: 0 }`. */
export async function readDoc<T>(kv: Kv, key: string): Promise<Doc<T>> {
  const e = await kv.get(key);
  if (!e || e.value.length === 0) return { value: undefined, revision: 0 };
  return { value: JSON.parse(dec.decode(e.value)) as T, revision: e.revision };
}

export interface CasOutcome<T, R> {
  result: R;
  /** True when `fn` asked for a write and it went through. */
  wrote: boolean;
  doc: Doc<T>;
}

/**
 * Applies `fn` to `first` (or a fresh read) and writes its value with compare-and-set.
 * On conflict another instance wrote since our read: read again and let `fn` decide
 * again on the new value, with jittered backoff, at most `attempts` times.
 * `fn` returns `value: undefined` to write nothing (a refusal).
 */
export async function casFrom<T, R>(
  kv: Kv,
  key: string,
  first: Doc<T> | undefined,
  fn: (cur: T | undefined) => { value: T | undefined; result: R },
  onRetry: () => void,
  attempts = 60,
): Promise<CasOutcome<T, R>> {
  let cur = first ?? (await readDoc<T>(kv, key));
  for (let i = 0; ; i++) {
    const { value, result } = fn(cur.value);
    if (value === undefined) return { result, wrote: false, doc: cur };
    const bytes = enc.encode(JSON.stringify(value));
    try {
      const revision = cur.revision ? await kv.update(key, bytes, cur.revision) : await kv.create(key, bytes);
      return { result, wrote: true, doc: { value, revision } };
    } catch (err) {
      if (!isKvConflict(err) || i + 1 >= attempts) throw err;
      onRetry();
      // Backoff grows to ~8 ms: enough to de-synchronise racing writers without adding
      // much to the latency of the one that loses.
      const cap = Math.min(8, 0.25 * 2 ** Math.min(i, 5));
      await new Promise((r) => setTimeout(r, Math.random() * cap));
      cur = await readDoc<T>(kv, key);
    }
  }
}
