// Compare-and-set on one JSON document, starting from a read the caller already made or a
// document it remembers (the limiter decides on all its keys first, and only then writes).
import { getJson, isKvConflict, type Kv } from "../kv";

const enc = new TextEncoder();

/** A parsed document and the revision it was read at (0 = absent). */
export interface Doc<T> {
  value: T | undefined;
  revision: number;
}

/** Reads a JSON document; absent keys read as `{ value: undefined, revision: 0 }`. */
export async function readDoc<T>(kv: Kv, key: string): Promise<Doc<T>> {
  return (await getJson<T>(kv, key)) ?? { value: undefined, revision: 0 };
}

export interface CasOutcome<T, R> {
  result: R;
  /** True when the step asked for a write and it went through. */
  wrote: boolean;
  doc: Doc<T>;
}

/** A step of a batched update: decides on the document as left by the steps before it. */
export type Step<T, R> = (cur: T | undefined) => { value: T | undefined; result: R };

/** A document as this instance last saw it, and when (a tick of the batcher's own counter). */
export interface Known<T> {
  doc: Doc<T>;
  /** Observation order: later reads and writes get higher ticks. */
  at: number;
}

interface Item {
  /** Tick at which the request began: documents seen after it are current for it. */
  since: number;
  step: Step<unknown, unknown>;
  resolve: (o: CasOutcome<unknown, unknown>) => void;
  reject: (e: unknown) => void;
}

/** Batched compare-and-set per key, for one instance, with the last known document of each key. */
export interface Batcher {
  /** The current tick: pass it as `since` for a request starting now. */
  tick(): number;
  /**
   * The last document this instance wrote or read for `key`, if it remembers it and the
   * key is not contended (another instance wrote it under us recently): a contended key's
   * memory is usually stale, so a caller does better to read it.
   */
  known<T>(key: string): Known<T> | undefined;
  /**
   * Reads `key` and remembers the result; `authoritative` makes the read replace a newer
   * remembered revision (to re-check a refusal against the store itself).
   */
  read<T>(key: string, authoritative?: boolean): Promise<Known<T>>;
  /**
   * Applies `step` to `key` in this instance's next write of it, starting from the last
   * known document. `since` is the tick at which the request began (see createBatcher).
   */
  submit<T, R>(key: string, since: number, step: Step<T, R>): Promise<CasOutcome<T, R>>;
}

/**
 * Group commit: the requests of one instance that update the same key while a write of it
 * is in flight wait, then go out together — their steps are applied one after another to
 * the same document and written with ONE compare-and-set. That keeps each decision exactly
 * as if the steps had run alone in that order (each sees the counts left by the previous
 * ones), but a hot key sees one writer per instance instead of one per request, so
 * conflicts (and retries) happen only between instances. On conflict the whole batch is
 * re-read and re-decided.
 *
 * Known documents: the batcher remembers, per key, the last document and revision this
 * instance wrote or read (up to `cacheKeys` keys, least recently used dropped first), and
 * starts the next batch from it instead of reading. Another instance may have written
 * since, so the cached document may be stale; that is safe in both directions:
 *   - a write from it is a compare-and-set on its revision, so a stale document can only
 *     cost a conflict, a re-read and a retry, never a write on top of changes it missed;
 *   - a decision NOT to write (a refusal, "nothing to adjust") is only taken on a document
 *     observed after the request began — a read or write made while the request was
 *     pending, exactly what a request that read for itself would have seen. If some step
 *     of the batch declines on an older document, the key is read again and the batch
 *     re-decided before anything is written or answered.
 */
export function createBatcher(kv: Kv, onRetry: () => void, attempts = 60, cacheKeys = 4096, contendedMs = 2_000): Batcher {
  const queues = new Map<string, Item[]>();
  // Keys whose compare-and-set met another instance's write, and when (ms, Date.now()).
  // Admissions on such a key read it first, as they did before documents were remembered:
  // a document that another instance keeps moving is nearly always stale, and an instance
  // that wrote from memory back to back (one round trip per batch) would leave a rival
  // that must read and then write (two) too few gaps to ever get its write in.
  const contended = new Map<string, number>();
  const isContended = (k: string) => {
    const at = contended.get(k);
    return at !== undefined && Date.now() - at < contendedMs;
  };
  // Insertion order is recency order: a touched key is deleted and set again.
  const cache = new Map<string, Known<unknown>>();
  let ticks = 0;

  /**
   * Records `doc` as the key's last known document. Concurrent reads may come back out of
   * order, and revisions only grow, so a read older than what we know is ignored — except
   * (`authoritative`) right after the store refused our revision, or when a refusal is to
   * be re-checked: then the read is what counts (the key may have expired or been deleted).
   */
  const remember = <T>(k: string, doc: Doc<T>, authoritative = false): Known<T> => {
    const old = cache.get(k);
    const entry = { doc: !authoritative && old && old.doc.revision > doc.revision ? old.doc : doc, at: ++ticks };
    cache.delete(k);
    cache.set(k, entry);
    if (cache.size > cacheKeys) cache.delete(cache.keys().next().value!);
    return entry as Known<T>;
  };
  const read = async <T>(k: string, authoritative = false) => remember<T>(k, await readDoc<T>(kv, k), authoritative);

  const run = async (k: string) => {
    const queue = queues.get(k)!;
    while (queue.length > 0) {
      const batch = queue.splice(0);
      try {
        await commit(k, batch);
      } catch (err) {
        // A read failed before any outcome was given out.
        cache.delete(k);
        batch.forEach((b) => b.reject(err));
      }
    }
    queues.delete(k);
    // A contended key's next run starts from its requests' own reads, not from our last
    // write: otherwise the instance that wins once keeps writing from memory, one round
    // trip per batch, and a rival that needs a read and a write never gets in.
    if (isContended(k)) cache.delete(k);
  };

  const commit = async (k: string, batch: Item[]) => {
    let cur = cache.get(k) ?? (await read(k));
    for (let i = 0; ; ) {
      let state = cur.doc.value;
      let dirty = false;
      let declinedOnOld = false;
      const outs: Array<{ result: unknown; wrote: boolean } | { error: unknown }> = batch.map((b) => {
        try {
          const { value, result } = b.step(state);
          if (value === undefined) {
            if (cur.at <= b.since) declinedOnOld = true;
            return { result, wrote: false };
          }
          state = value;
          dirty = true;
          return { result, wrote: true };
        } catch (error) {
          return { error };
        }
      });
      if (declinedOnOld) {
        // A refusal must rest on what the store held during the request: look again.
        cur = await read(k, true);
        continue;
      }
      const settle = (doc: Doc<unknown>) =>
        batch.forEach((b, j) => {
          const o = outs[j];
          if ("error" in o) b.reject(o.error);
          else b.resolve({ result: o.result, wrote: o.wrote, doc });
        });
      if (!dirty) {
        settle(cur.doc);
        return;
      }
      const bytes = enc.encode(JSON.stringify(state));
      try {
        const revision = cur.doc.revision ? await kv.update(k, bytes, cur.doc.revision) : await kv.create(k, bytes);
        settle(remember(k, { value: state, revision }).doc);
        return;
      } catch (err) {
        if (isKvConflict(err)) {
          contended.delete(k);
          contended.set(k, Date.now());
          if (contended.size > cacheKeys) contended.delete(contended.keys().next().value!);
        }
        if (!isKvConflict(err) || ++i >= attempts) {
          // The write may or may not have landed: forget the key rather than guess.
          cache.delete(k);
          batch.forEach((b) => b.reject(err));
          return;
        }
        onRetry();
        // Backoff grows to ~8 ms: enough to de-synchronise racing writers without adding
        // much to the latency of the one that loses.
        const cap = Math.min(8, 0.25 * 2 ** Math.min(i - 1, 5));
        await new Promise((r) => setTimeout(r, Math.random() * cap));
        cur = await read(k, true);
      }
    }
  };

  return {
    tick: () => ticks,
    known: <T>(k: string) => (isContended(k) ? undefined : (cache.get(k) as Known<T> | undefined)),
    read,
    submit<T, R>(k: string, since: number, step: Step<T, R>) {
      return new Promise<CasOutcome<T, R>>((resolve, reject) => {
        let queue = queues.get(k);
        const idle = !queue;
        if (!queue) queues.set(k, (queue = []));
        queue.push({ since, step: step as Step<unknown, unknown>, resolve: resolve as Item["resolve"], reject });
        if (idle) void run(k);
      });
    },
  };
}
