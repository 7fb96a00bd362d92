// The group cache over the in-memory bucket: shared loads, one read at a time per group,
// reloads when a group went unread too long or changed too much, writes applied at once,
// and a late older value never reviving a key this instance deleted.
import { describe, expect, it } from "vitest";
import { CONTENDED_MS, GroupCache, isKvConflict, KvConflictError, MemoryKv, type Kv, type KvEntry } from "../lib/kv";
import { silentLogger } from "../lib/log";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A cache whose groups are `g.<name>.*`, each state a map of key → value text. */
function cacheOver(kv: Kv, opts: { maxGroups?: number; maxBytes?: number; staleAfterMs?: number; now?: () => number; proofs?: boolean } = {}) {
  return new GroupCache<Map<string, string>>({
    kv,
    name: "test",
    filter: (g) => `g.${g}.*`,
    empty: () => new Map(),
    apply: (st, k, e: KvEntry | null) => (e ? st.set(k, dec.decode(e.value)) : st.delete(k)),
    bytes: (st) => st.size * 100,
    maxGroups: opts.maxGroups ?? 10,
    maxBytes: opts.maxBytes ?? 1_000_000,
    staleAfterMs: opts.staleAfterMs,
    proofs: opts.proofs,
    clock: { now: opts.now ?? (() => Date.now()) },
    log: silentLogger,
  });
}

const put = (kv: Kv, k: string, v: string) => kv.put(k, enc.encode(v));

/** The in-memory bucket with some of its calls replaced. */
const overriding = (kv: MemoryKv, over: Partial<Kv>): Kv => ({
  bucket: kv.bucket,
  get: (k) => kv.get(k),
  put: (k, v, o) => kv.put(k, v, o),
  create: (k, v, o) => kv.create(k, v, o),
  update: (k, v, r, o) => kv.update(k, v, r, o),
  delete: (k) => kv.delete(k),
  keys: (f) => kv.keys(f),
  snapshot: (f) => kv.snapshot(f),
  changes: (f, a) => kv.changes(f, a),
  ...over,
});

describe("group cache", () => {
  it("shares one load among concurrent first uses, and one read among uses arriving during a read", async () => {
    const kv = new MemoryKv();
    await put(kv, "g.a.1", "one");
    const cache = cacheOver(kv);
    const states = await Promise.all(Array.from({ length: 5 }, () => cache.use("a")));
    expect(new Set(states).size).toBe(1);
    expect(kv.ops.snapshot).toBe(1);
    // The uses that arrived while the load was in flight share the one check after it.
    expect(kv.ops.changes).toBe(1);
    await put(kv, "g.a.2", "two");
    const later = await Promise.all(Array.from({ length: 5 }, () => cache.use("a")));
    expect(kv.ops.changes).toBe(3);
    expect(later.every((st) => [...st.values()].join() === "one,two")).toBe(true);
  });

  it("loads a group afresh once it went unread too long, and when too much changed to list", async () => {
    let now = 0;
    const kv = new MemoryKv();
    await put(kv, "g.a.1", "one");
    let tooMuch = false;
    const cache = cacheOver(overriding(kv, { changes: (f, a) => (tooMuch ? Promise.resolve(null) : kv.changes(f, a)) }), { staleAfterMs: 1_000, now: () => now });
    await cache.use("a");
    now += 999;
    await cache.use("a");
    expect(kv.ops.snapshot).toBe(1);
    now += 2_000;
    await cache.use("a");
    expect(kv.ops.snapshot).toBe(2);
    tooMuch = true;
    await put(kv, "g.a.2", "two");
    expect([...(await cache.use("a")).values()]).toEqual(["one", "two"]);
    expect(kv.ops.snapshot).toBe(3);
  });

  it("applies this instance's writes at once, and a late older value does not revive a deleted key", async () => {
    const kv = new MemoryKv();
    await put(kv, "g.a.1", "one");
    // A bucket whose answers to a check are held until released: a check in flight.
    let hold: (() => void) | undefined;
    const slow = overriding(kv, {
      async changes(f, a) {
        const r = await kv.changes(f, a);
        await new Promise<void>((resolve) => (hold = resolve));
        return r;
      },
    });
    const cache = cacheOver(slow);
    const st = await cache.use("a");
    const revision = await put(kv, "g.a.2", "two");
    cache.wrote("a", { key: "g.a.2", value: enc.encode("two"), revision });
    expect(st.get("g.a.2")).toBe("two");
    // A check starts, reads "two" from the bucket, and is held; meanwhile this instance deletes it.
    const checking = cache.use("a");
    await new Promise((r) => setImmediate(r));
    cache.deleted("a", "g.a.2");
    expect(st.has("g.a.2")).toBe(false);
    hold!();
    await checking;
    expect(st.has("g.a.2")).toBe(false);
  });

  it("keeps no group that holds nothing, and at most maxGroups groups", async () => {
    const kv = new MemoryKv();
    const cache = cacheOver(kv, { maxGroups: 3 });
    await cache.use("empty");
    expect(cache.stats().groups).toBe(0);
    for (let i = 0; i < 6; i++) {
      await put(kv, `g.n${i}.k`, "v");
      await cache.use(`n${i}`);
    }
    expect(cache.stats()).toEqual({ groups: 3, bytes: cache.stats().bytes });
    expect(cache.peek("n5")?.get("g.n5.k")).toBe("v");
    expect(cache.peek("n0")).toBeUndefined();
  });

  it("keeps the group in use when it alone is larger than maxBytes, and only it", async () => {
    const kv = new MemoryKv();
    const cache = cacheOver(kv, { maxBytes: 1_000 }); // 100 bytes a key
    await put(kv, "g.small.k", "v");
    await cache.use("small");
    for (let i = 0; i < 20; i++) await put(kv, `g.big.${i}`, "v");
    await cache.use("big");
    expect(cache.peek("small")).toBeUndefined();
    // Used again: brought up to date, not loaded again.
    await cache.use("big");
    expect(kv.ops.snapshot).toBe(2);
    expect(cache.stats().groups).toBe(1);
    // Another group's use lets it go.
    await cache.use("small");
    expect(cache.peek("big")).toBeUndefined();
    expect(cache.stats().groups).toBe(1);
  });
});

describe("group cache: writes that prove a group current", () => {
  /** A conditioned write when the cache offers a condition, else the caller's compare-and-set. */
  const writer = (kv: Kv, k: string, v: string, expected?: number) => (within?: { filter: string; last: number }) =>
    within ? kv.put(k, enc.encode(v), { within }) : expected === undefined ? kv.put(k, enc.encode(v)) : expected === 0 ? kv.create(k, enc.encode(v)) : kv.update(k, enc.encode(v), expected);

  it("spares the read of a use that began before a write which found nothing new under the group", async () => {
    const kv = new MemoryKv();
    await put(kv, "g.a.1", "one");
    await put(kv, "g.other.1", "another group's write");
    const cache = cacheOver(kv);
    await cache.use("a");
    expect(cache.provable("a")).toBe(true);
    const since = performance.now();
    await cache.write("a", "g.a.doc", enc.encode("admitted"), writer(kv, "g.a.doc", "admitted"), 0);
    const reads = kv.ops.changes + kv.ops.snapshot;
    const st = await cache.use("a", since);
    expect(kv.ops.changes + kv.ops.snapshot).toBe(reads);
    expect([...st.values()]).toEqual(["one", "admitted"]);
    // A use that began after the write proves nothing: it reads.
    await cache.use("a", performance.now());
    expect(kv.ops.changes + kv.ops.snapshot).toBe(reads + 1);
    // Writes chain: the next one is conditioned on the last, and proves again.
    const again = performance.now();
    await cache.write("a", "g.a.2", enc.encode("two"), writer(kv, "g.a.2", "two"), 0);
    await cache.use("a", again);
    expect(kv.ops.changes + kv.ops.snapshot).toBe(reads + 1);
  });

  it("makes the write as the caller means it when another writer came first, then reads, and proves nothing for a while", async () => {
    let now = 1_000_000;
    const kv = new MemoryKv();
    const doc = await put(kv, "g.a.doc", "v1");
    const cache = cacheOver(kv, { now: () => now });
    await cache.use("a");
    // Another instance writes under the group (not the key this one writes).
    await put(kv, "g.a.history", "theirs");
    const since = performance.now();
    const rev = await cache.write("a", "g.a.doc", enc.encode("v2"), writer(kv, "g.a.doc", "v2", doc), doc);
    expect(dec.decode((await kv.get("g.a.doc"))!.value)).toBe("v2");
    expect((await kv.get("g.a.doc"))!.revision).toBe(rev);
    expect(cache.provable("a")).toBe(false);
    const st = await cache.use("a", since);
    expect(st.get("g.a.history")).toBe("theirs");
    // The caller's own compare-and-set still decides: a stale revision is refused.
    await expect(cache.write("a", "g.a.doc", enc.encode("v3"), writer(kv, "g.a.doc", "v3", doc), doc)).rejects.toSatisfy(isKvConflict);
    // Once no other writer was seen for a while, the next read makes the group provable again.
    now += CONTENDED_MS;
    await cache.use("a");
    expect(cache.provable("a")).toBe(true);
  });

  it("refuses a write for a revision the current group does not hold, with no round trip", async () => {
    const kv = new MemoryKv();
    const r = await put(kv, "g.a.doc", "v1");
    const cache = cacheOver(kv);
    await cache.use("a");
    const writes = kv.ops.put + kv.ops.update;
    await expect(cache.write("a", "g.a.doc", enc.encode("v2"), writer(kv, "g.a.doc", "v2", r - 1), r - 1)).rejects.toSatisfy(isKvConflict);
    await expect(cache.write("a", "g.a.new", enc.encode("x"), writer(kv, "g.a.new", "x", 0), 0)).resolves.toBeGreaterThan(r);
    await expect(cache.write("a", "g.a.new", enc.encode("y"), writer(kv, "g.a.new", "y", 0), 0)).rejects.toSatisfy(isKvConflict);
    expect(kv.ops.put + kv.ops.update).toBe(writes + 1);
  });

  it("only lowers its tip when the group's last messages expired, and still proves", async () => {
    const kv = new MemoryKv();
    await put(kv, "g.a.1", "one");
    const cache = cacheOver(kv);
    await cache.use("a");
    // As the server answers once the group's last messages (markers) expired: its last is
    // older than the tip, and nothing was written since.
    const conditions: number[] = [];
    const op = (within?: { filter: string; last: number }) => {
      if (!within) return Promise.reject(new Error("expected a conditioned write"));
      conditions.push(within.last);
      if (within.last !== 0) return Promise.reject(new KvConflictError("wrong last sequence: 0", 0));
      return kv.put("g.a.2", enc.encode("two"));
    };
    const since = performance.now();
    await cache.write("a", "g.a.2", enc.encode("two"), op, 0);
    expect(conditions).toEqual([1, 0]);
    expect(cache.provable("a")).toBe(true);
    const reads = kv.ops.changes;
    await cache.use("a", since);
    expect(kv.ops.changes).toBe(reads);
  });

  it("tells another instance's write from its own in flight when a read meets both", async () => {
    const kv = new MemoryKv();
    await put(kv, "g.a.1", "one");
    const cache = cacheOver(kv);
    await cache.use("a");
    // This instance's write lands, its acknowledgement is held back; another instance writes too.
    let ack!: () => void;
    const acked = new Promise<void>((r) => (ack = r));
    const mine = cache.write("a", "g.a.mine", enc.encode("m"), async () => {
      const rev = await kv.put("g.a.mine", enc.encode("m"));
      await acked;
      return rev;
    });
    await Promise.resolve();
    expect(cache.quiet("a")).toBe(true);
    // A read that brings only this instance's own write notes no other writer...
    await cache.use("a");
    expect(cache.quiet("a")).toBe(true);
    // ...one that brings another's does, though its own write is still in flight.
    await put(kv, "g.a.theirs", "t");
    await cache.use("a");
    expect(cache.quiet("a")).toBe(false);
    ack();
    await mine;
  });

  it("on a bucket whose conditions are not exact (proofs off), writes nothing conditioned and every use reads", async () => {
    const kv = new MemoryKv();
    await put(kv, "g.a.1", "one");
    const cache = cacheOver(kv, { proofs: false });
    await cache.use("a");
    expect(cache.provable("a")).toBe(false);
    expect(cache.quiet("a")).toBe(false);
    const conditions: unknown[] = [];
    const since = performance.now();
    await cache.write("a", "g.a.2", enc.encode("two"), (within) => (conditions.push(within), kv.put("g.a.2", enc.encode("two"))), 0);
    expect(conditions).toEqual([undefined]);
    const reads = kv.ops.changes;
    await cache.use("a", since);
    expect(kv.ops.changes).toBe(reads + 1);
  });
});
