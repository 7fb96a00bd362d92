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

/** A step of a batched update: decides on the document as left by the steps before it. */
export type Step<T, R> = (cur: T | undefined) => { value: T | undefined; result: R };

interface Item {
  first: Doc<unknown> | undefined;
  step: Step<unknown, unknown>;
  resolve: (o: CasOutcome<unknown, unknown>) => void;
  reject: (e: unknown) => void;
}

/** Batched compare-and-set per key, for one instance. */
export interface Batcher {
  /** Applies `step` to `key` in this instance's next write of it; `first` is a read to start from. */
  submit<T, R>(key: string, first: Doc<T> | undefined, step: Step<T, R>): Promise<CasOutcome<T, R>>;
}

/**
 * Group commit: the requests of one instance that update the same key while a write of it
 * is in flight wait, then go out together — their steps are applied one after another to
 * the same read and written with ONE compare-and-set. That keeps each decision exactly as
 * if the steps had run alone in that order (each sees the counts left by the previous
 * ones), but a hot key sees one writer per instance instead of one per request, so
 * conflicts (and retries) happen only between instances. On conflict the whole batch is
 * re-read and re-decided. The revision of our last write is kept while the key is busy, so
 * a following batch can skip its read when nobody else wrote.
 */
export function createBatcher(kv: Kv, onRetry: () => void, attempts = 60): Batcher {
  const keys = new Map<string, { queue: Item[]; last?: Doc<unknown> }>();

  const newest = (docs: Array<Doc<unknown> | undefined>) =>
    docs.reduce<Doc<unknown> | undefined>((a, d) => (d && (!a || d.revision > a.revision) ? d : a), undefined);

  const run = async (k: string) => {
    const slot = keys.get(k)!;
    while (slot.queue.length > 0) {
      const batch = slot.queue.splice(0);
      try {
        await commit(k, slot, batch);
      } catch (err) {
        // A read failed before any outcome was given out.
        slot.last = undefined;
        batch.forEach((b) => b.reject(err));
      }
    }
    keys.delete(k);
  };

  const commit = async (k: string, slot: { last?: Doc<unknown> }, batch: Item[]) => {
    {
      let cur = newest([slot.last, ...batch.map((b) => b.first)]) ?? (await readDoc(kv, k));
      for (let i = 0; ; i++) {
        let state = cur.value;
        let dirty = false;
        const outs: Array<{ result: unknown; wrote: boolean } | { error: unknown }> = batch.map((b) => {
          try {
            const { value, result } = b.step(state);
            if (value === undefined) return { result, wrote: false };
            state = value;
            dirty = true;
            return { result, wrote: true };
          } catch (error) {
            return { error };
          }
        });
        const settle = (doc: Doc<unknown>) =>
          batch.forEach((b, j) => {
            const o = outs[j];
            if ("error" in o) b.reject(o.error);
            else b.resolve({ result: o.result, wrote: o.wrote, doc });
          });
        if (!dirty) {
          settle(cur);
          break;
        }
        const bytes = enc.encode(JSON.stringify(state));
        try {
          const revision = cur.revision ? await kv.update(k, bytes, cur.revision) : await kv.create(k, bytes);
          slot.last = { value: state, revision };
          settle(slot.last);
          break;
        } catch (err) {
          if (!isKvConflict(err) || i + 1 >= attempts) {
            slot.last = undefined;
            batch.forEach((b) => b.reject(err));
            break;
          }
          onRetry();
          const cap = Math.min(8, 0.25 * 2 ** Math.min(i, 5));
          await new Promise((r) => setTimeout(r, Math.random() * cap));
          cur = await readDoc(kv, k);
        }
      }
    }
  };

  return {
    submit<T, R>(k: string, first: Doc<T> | undefined, step: Step<T, R>) {
      return new Promise<CasOutcome<T, R>>((resolve, reject) => {
        let slot = keys.get(k);
        const idle = !slot;
        if (!slot) keys.set(k, (slot = { queue: [] }));
        slot.queue.push({ first, step: step as Step<unknown, unknown>, resolve: resolve as Item["resolve"], reject });
        if (idle) void run(k);
      });
    },
  };
}
