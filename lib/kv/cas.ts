// Compare-and-set read-modify-write on one key, shared by the limiter, usage, memory and
// personas. Another instance may write between our read and our write; the revision check
// makes the write fail then, and we read again. Retries are bounded and jittered so racing
// writers spread out instead of colliding in lock-step.
import { isKvConflict, type Kv } from "./types";

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface CasOptions {
  /** Attempts before giving up (default 50). */
  attempts?: number;
  /** First backoff in ms; doubles per conflict up to maxDelayMs (default 1). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Called on every conflict (for counters). */
  onRetry?: () => void;
}

export interface CasResult<T, R> {
  /** The value written (or the current one when `fn` chose not to write). */
  value: T;
  /** Whatever `fn` returned besides the new value. */
  result: R;
  revision: number;
  /** Conflicts met before the write went through. */
  retries: number;
}

/** Reads a JSON value; null when the key is absent. */
export async function getJson<T>(kv: Kv, key: string): Promise<{ value: T; revision: number } | null> {
  const e = await kv.get(key);
  if (!e || e.value.length === 0) return null;
  return { value: JSON.parse(dec.decode(e.value)) as T, revision: e.revision };
}

/**
 * Applies `fn` to the current value of `key` (undefined when absent) and writes the value it
 * returns with compare-and-set, retrying on conflict. `fn` returns `{ value, result }`, or
 * `{ value: undefined, result }` to leave the key unchanged (e.g. a refused admission).
 */
export async function casUpdate<T, R>(
  kv: Kv,
  key: string,
  fn: (current: T | undefined) => { value: T | undefined; result: R },
  opts: CasOptions = {},
): Promise<CasResult<T | undefined, R>> {
  const attempts = opts.attempts ?? 50;
  const base = opts.baseDelayMs ?? 1;
  const max = opts.maxDelayMs ?? 50;
  let retries = 0;
  for (let i = 0; ; i++) {
    const cur = await getJson<T>(kv, key);
    const { value, result } = fn(cur?.value);
    if (value === undefined) return { value: cur?.value, result, revision: cur?.revision ?? 0, retries };
    const bytes = enc.encode(JSON.stringify(value));
    try {
      const revision = cur ? await kv.update(key, bytes, cur.revision) : await kv.create(key, bytes);
      return { value, result, revision, retries };
    } catch (err) {
      if (!isKvConflict(err) || i + 1 >= attempts) throw err;
      retries++;
      opts.onRetry?.();
      const cap = Math.min(max, base * 2 ** Math.min(i, 10));
      await new Promise((r) => setTimeout(r, Math.random() * cap));
    }
  }
}
