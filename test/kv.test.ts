import { describe, expect, it } from "vitest";
import { MemoryKv, casUpdate, getJson, isKvConflict, matchesFilter } from "../lib/kv";

const enc = new TextEncoder();

describe("in-memory KV", () => {
  it("has JetStream's compare-and-set semantics", async () => {
    const kv = new MemoryKv();
    const r1 = await kv.create("a", enc.encode("1"));
    await expect(kv.create("a", enc.encode("2"))).rejects.toSatisfy(isKvConflict);
    await expect(kv.update("a", enc.encode("2"), r1 + 100)).rejects.toSatisfy(isKvConflict);
    const r2 = await kv.update("a", enc.encode("2"), r1);
    expect(r2).toBeGreaterThan(r1);
    await kv.delete("a");
    expect(await kv.get("a")).toBeNull();
    await kv.create("a", enc.encode("3"));
  });

  it("matches subject-style filters", () => {
    expect(matchesFilter("a.*", "a.b")).toBe(true);
    expect(matchesFilter("a.*", "a.b.c")).toBe(false);
    expect(matchesFilter("a.>", "a.b.c")).toBe(true);
    expect(matchesFilter("a.>", "a")).toBe(false);
    expect(matchesFilter("a.b", "a.b")).toBe(true);
    expect(matchesFilter("a.b.c", "a.b")).toBe(false);
  });

  it("lists keys and tells watchers about current and later values", async () => {
    const kv = new MemoryKv();
    await kv.put("m.c1.x", enc.encode("1"));
    await kv.put("h.c1.y", enc.encode("2"));
    expect(await kv.keys("m.>")).toEqual(["m.c1.x"]);
    const seen: Array<[string, boolean]> = [];
    const stop = await kv.watch("m.>", (k, e) => seen.push([k, e !== null]));
    await kv.put("m.c1.z", enc.encode("3"));
    await kv.delete("m.c1.x");
    await kv.put("h.other", enc.encode("4"));
    stop();
    await kv.put("m.c1.after", enc.encode("5"));
    expect(seen).toEqual([
      ["m.c1.x", true],
      ["m.c1.z", true],
      ["m.c1.x", false],
    ]);
  });

  it("reads the live keys under a filter, then what changed after a revision, deletions included", async () => {
    const kv = new MemoryKv();
    await kv.put("t.c1.a", enc.encode("1"));
    await kv.put("t.c2.a", enc.encode("2"));
    const snap = await kv.snapshot("*.c1.*");
    expect(snap.entries.map((e) => e.key)).toEqual(["t.c1.a"]);
    await kv.put("m.c1.b", enc.encode("3"));
    await kv.delete("t.c1.a");
    await kv.put("t.c2.b", enc.encode("4"));
    const { changes, revision } = await kv.changes("*.c1.*", snap.revision);
    expect(changes.map((c) => [c.key, c.entry !== null])).toEqual([
      ["m.c1.b", true],
      ["t.c1.a", false],
    ]);
    expect((await kv.changes("*.c1.*", revision)).changes).toEqual([]);
    expect((await kv.snapshot("*.c1.*")).entries.map((e) => e.key)).toEqual(["m.c1.b"]);
  });
});

describe("casUpdate", () => {
  it("never loses an increment when writers race", async () => {
    const kv = new MemoryKv();
    const inc = () => casUpdate<number, void>(kv, "n", (n) => ({ value: (n ?? 0) + 1, result: undefined }));
    const results = await Promise.all(Array.from({ length: 50 }, inc));
    expect((await getJson<number>(kv, "n"))?.value).toBe(50);
    expect(results.reduce((s, r) => s + r.retries, 0)).toBeGreaterThan(0);
  });

  it("writes nothing when the function declines", async () => {
    const kv = new MemoryKv();
    const r = await casUpdate<number, string>(kv, "n", () => ({ value: undefined, result: "refused" }));
    expect(r.result).toBe("refused");
    expect(await kv.get("n")).toBeNull();
  });

  it("gives up after the bounded attempts", async () => {
    const kv = new MemoryKv();
    await kv.put("n", enc.encode("0"));
    // Another writer moves the key on between every read and write.
    const r = casUpdate<number, void>(
      kv,
      "n",
      (n) => {
        void kv.put("n", enc.encode(String((n ?? 0) + 100)));
        return { value: (n ?? 0) + 1, result: undefined };
      },
      { attempts: 3, baseDelayMs: 0 },
    );
    await expect(r).rejects.toSatisfy(isKvConflict);
  });
});

