// Compare-and-set on JSON documents: the one write engine of the limiter, usage, memory and
// personas. Another instance may write between our read and our write; the revision check
// makes the write fail then, and we read again and decide again. Retries are bounded and
// jittered so racing writers spread out instead of colliding in lock-step.
//
// Two ways in:
//   - casUpdate: one read-modify-write of one key (memory, personas, rare paths).
//   - createBatcher: group commit per key with remembered documents, for keys this instance
//     writes on every request (limiter and usage documents); see its doc comment.
import { isKvConflict, type Kv } from "./types";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A parsed document and the revision it was read at (0 = absent). */
export interface Doc<T> {
  value: T | undefined;
  revision: number;
}

/** Reads a JSON value; null when the key is absent. */
export async function getJson<T>(kv: Kv, key: string): Promise<{ value: T; revision: number } | null> {
  const e = await kv.get(key);
  if (!e || e.value.length === 0) return null;
  return { value: JSON.parse(dec.decode(e.value)) as T, revision: e.revision };
}

/** Reads a JSON document; absent keys read as `{ value: undefined, revision: 0 }`. */
export async function readDoc<T>(kv: Kv, key: string): Promise<Doc<T>> {
  return (await getJson<T>(kv, key)) ?? { value: undefined, revision: 0 };
}

/** A decision on the current value: the value to write (undefined: leave the key as it is) and a result. */
export type Step<T, R> = (cur: T | undefined) => { value: T | undefined; result: R };

export interface CasOptions {
  /** Attempts before giving up (default 50). */
  attempts?: number;
  /** First backoff in ms; doubles per conflict up to maxDelayMs (default 1 and 50). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Called on every conflict (for counters). */
  onRetry?: () => void;
}

export interface CasResult<T, R> {
  /** The value written (or the current one when `fn` chose not to write). */
  value: T | undefined;
  /** Whatever `fn` returned besides the new value. */
  result: R;
  revision: number;
  /** Conflicts met before the write went through. */
  retries: number;
}

/** One decision of the write loop: the value to write, or `redo` to read again first. */
interface Decision<T> {
  value: T | undefined;
  redo?: boolean;
}

/**
 * The write loop both entries share: decide on `doc`, write with compare-and-set on its
 * revision, and on a conflict back off, read again (`reread`) and decide again.
 */
async function writeLoop<T>(
  kv: Kv,
  key: string,
  doc: Doc<T>,
  decide: (doc: Doc<T>) => Decision<T>,
  reread: () => Promise<Doc<T>>,
  opts: Required<Omit<CasOptions, "onRetry">> & Pick<CasOptions, "onRetry">,
): Promise<{ doc: Doc<T>; wrote: boolean }> {
  for (let i = 0; ; ) {
    const d = decide(doc);
    if (d.redo) {
      doc = await reread();
      continue;
    }
    if (d.value === undefined) return { doc, wrote: false };
    const bytes = enc.encode(JSON.stringify(d.value));
    try {
      const revision = doc.revision ? await kv.update(key, bytes, doc.revision) : await kv.create(key, bytes);
      return { doc: { value: d.value, revision }, wrote: true };
    } catch (err) {
      if (!isKvConflict(err) || ++i >= opts.attempts) throw err;
      opts.onRetry?.();
      const cap = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.min(i - 1, 10));
      await new Promise((r) => setTimeout(r, Math.random() * cap));
      doc = await reread();
    }
  }
}

const loopOptions = (o: CasOptions) => ({ attempts: o.attempts ?? 50, baseDelayMs: o.baseDelayMs ?? 1, maxDelayMs: o.maxDelayMs ?? 50, onRetry: o.onRetry });

/**
 * Applies `fn` to the current value of `key` (undefined when absent) and writes the value it
 * returns with compare-and-set, retrying on conflict. `fn` returns `{ value, result }`, or
 * `{ value: undefined, result }` to leave the key unchanged (e.g. a refused admission).
 */
export async function casUpdate<T, R>(kv: Kv, key: string, fn: Step<T, R>, opts: CasOptions = {}): Promise<CasResult<T, R>> {
  let retries = 0;
  let result!: R;
  const o = loopOptions(opts);
  const out = await writeLoop<T>(
    kv,
    key,
    await readDoc<T>(kv, key),
    (doc) => {
      const step = fn(doc.value);
      result = step.result;
      return { value: step.value };
    },
    () => readDoc<T>(kv, key),
    { ...o, onRetry: () => (retries++, o.onRetry?.()) },
  );
  return { value: out.doc.value, result, revision: out.doc.revision, retries };
}

export interface CasOutcome<T, R> {
  result: R;
  /** True when the step asked for a write and it went through. */
  wrote: boolean;
  doc: Doc<T>;
}

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
  /**
   * Remembers `key` as absent without reading it: for a key only this instance creates, its
   * first write is a create (a conflict, should it exist after all, reads it and retries).
   */
  assumeAbsent(key: string): void;
}

export interface BatcherOptions {
  /** Called on every compare-and-set conflict (for counters). */
  onRetry?: () => void;
  /** Attempts per batch before its requests fail (default 60). */
  attempts?: number;
  /** Keys whose last document is remembered, least recently used dropped first (default 4096). */
  cacheKeys?: number;
  /** How long a key another instance wrote under us is read before each write (ms, default 2000). */
  contendedMs?: number;
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
 * instance wrote or read (up to `cacheKeys` keys), and starts the next batch from it instead
 * of reading. Another instance may have written since, so the remembered document may be
 * stale; that is safe in both directions:
 *   - a write from it is a compare-and-set on its revision, so a stale document can only
 *     cost a conflict, a re-read and a retry, never a write on top of changes it missed;
 *   - a decision NOT to write (a refusal, "nothing to adjust") is only taken on a document
 *     observed after the request began — a read or write made while the request was
 *     pending, exactly what a request that read for itself would have seen. If some step
 *     of the batch declines on an older document, the key is read again and the batch
 *     re-decided before anything is written or answered.
 * A key whose write met another instance's write is "contended" for `contendedMs`: its
 * batches start from a read, as a busy shared key's remembered document is mostly stale,
 * and an instance writing from memory back to back (one round trip per batch) would leave a
 * rival that must read and then write (two) no gap to get its write in.
 */
export function createBatcher(kv: Kv, opts: BatcherOptions = {}): Batcher {
  const attempts = opts.attempts ?? 60;
  const cacheKeys = opts.cacheKeys ?? 4096;
  const contendedMs = opts.contendedMs ?? 2_000;
  const queues = new Map<string, Item[]>();
  // Keys whose compare-and-set met another instance's write, and when (Date.now()).
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

  const commit = async (k: string, batch: Item[]) => {
    let cur = cache.get(k) ?? (await read(k));
    let outs: Array<{ result: unknown; wrote: boolean } | { error: unknown }> = [];
    const decide = (doc: Doc<unknown>): Decision<unknown> => {
      let state = doc.value;
      let dirty = false;
      let declinedOnOld = false;
      outs = batch.map((b) => {
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
      // A refusal must rest on what the store held during the request: look again.
      if (declinedOnOld) return { value: undefined, redo: true };
      return { value: dirty ? state : undefined };
    };
    const reread = async () => (cur = await read(k, true)).doc;
    let out: { doc: Doc<unknown>; wrote: boolean };
    try {
      out = await writeLoop(kv, k, cur.doc, decide, reread, {
        attempts,
        baseDelayMs: 0.25,
        maxDelayMs: 8,
        onRetry: () => {
          contended.delete(k);
          contended.set(k, Date.now());
          if (contended.size > cacheKeys) contended.delete(contended.keys().next().value!);
          opts.onRetry?.();
        },
      });
    } catch (err) {
      // A read failed, or the write may or may not have landed: forget the key rather than guess.
      cache.delete(k);
      batch.forEach((b) => b.reject(err));
      return;
    }
    const doc = out.wrote ? remember(k, out.doc).doc : out.doc;
    batch.forEach((b, j) => {
      const o = outs[j];
      if ("error" in o) b.reject(o.error);
      else b.resolve({ result: o.result, wrote: o.wrote, doc });
    });
  };

  const run = async (k: string) => {
    const queue = queues.get(k)!;
    while (queue.length > 0) await commit(k, queue.splice(0));
    queues.delete(k);
    // A contended key's next run starts from its requests' own reads, not from our last
    // write (see above).
    if (isContended(k)) cache.delete(k);
  };

  return {
    tick: () => ticks,
    assumeAbsent: (k) => void (cache.has(k) || remember(k, { value: undefined, revision: 0 })),
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
