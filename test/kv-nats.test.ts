// The nats KV adapter against a real server: compare-and-set conflicts, key listing from the
// stream's subject list (complete, filtered, tolerant of deleted keys), the watch, and the
// group reads of runtime/kv-reads.ts (snapshot of the keys under a filter, changes since).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JetStreamManager, KV, NatsConnection } from "nats";
import { isKvConflict, type Kv } from "../lib/kv";
import { natsKv } from "../runtime/kv";
import { leaderTolerant } from "../runtime/provision";
import { streamReads } from "../runtime/kv-reads";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client } from "./helpers/service";

let srv: TestServer;
let nc: NatsConnection;
let kv: Kv;
let bucket: KV;
let jsm: JetStreamManager;
const enc = new TextEncoder();
const dec = new TextDecoder();

beforeAll(async () => {
  srv = await startTestServer();
  nc = await client(srv.url);
  bucket = await nc.jetstream().views.kv("ADAPTER_TEST", { history: 1 });
  jsm = await nc.jetstreamManager();
  kv = natsKv(bucket, "ADAPTER_TEST", jsm);
});
afterAll(async () => {
  await nc?.close();
  await srv?.cleanup();
});

describe("nats KV adapter", () => {
  it("reports compare-and-set conflicts as KvConflictError", async () => {
    const r = await kv.create("x.one", enc.encode("1"));
    await expect(kv.create("x.one", enc.encode("2"))).rejects.toSatisfy(isKvConflict);
    await expect(kv.update("x.one", enc.encode("2"), r + 5)).rejects.toSatisfy(isKvConflict);
    expect(await kv.update("x.one", enc.encode("2"), r)).toBeGreaterThan(r);
  });

  it("writes within a filter only while nothing else was written under it, and says what it found", async () => {
    const handle = natsKv(leaderTolerant(bucket, nc.jetstream(), "ADAPTER_TEST"), "ADAPTER_TEST", jsm);
    const first = await handle.put("t.room.a", enc.encode("1"));
    const within = { filter: "*.room.*", last: first };
    // Another channel's write does not count; the key itself needs no revision.
    await handle.put("t.hall.a", enc.encode("x"));
    const second = await handle.put("l.room.doc", enc.encode("2"), { within });
    expect(second).toBeGreaterThan(first);
    // The same condition again: the write above is newer, and the server names it.
    const err = await handle.put("t.room.b", enc.encode("3"), { within }).catch((e: unknown) => e);
    expect(isKvConflict(err)).toBe(true);
    expect((err as { last?: number }).last).toBe(second);
    expect(await handle.get("t.room.b")).toBeNull();
    // A conditioned delete leaves a marker: the filter's new last.
    const marker = await handle.delete("t.room.a", { within: { filter: "*.room.*", last: second } });
    expect(marker).toBeGreaterThan(second);
    await expect(handle.put("t.room.c", enc.encode("4"), { within: { filter: "*.room.*", last: second } })).rejects.toSatisfy(isKvConflict);
    expect(await handle.put("t.room.c", enc.encode("4"), { within: { filter: "*.room.*", last: marker as number } })).toBeGreaterThan(marker as number);
  });

  it("lists every key under a filter, even thousands, and deleted keys read as absent", async () => {
    await Promise.all(Array.from({ length: 2_000 }, (_, i) => kv.put(`many.k${i}`, enc.encode(String(i)))));
    await kv.put("other.k", enc.encode("x"));
    await kv.delete("many.k7");
    const keys = await kv.keys("many.*");
    expect(keys.filter((k) => !k.startsWith("many."))).toEqual([]);
    const live = (await Promise.all(keys.map(async (k) => ((await kv.get(k)) ? k : null)))).filter(Boolean);
    expect(live).toHaveLength(1_999);
    expect(live).not.toContain("many.k7");
  });

  it("watches current values, then changes and deletes", async () => {
    await kv.put("w.a", enc.encode("1"));
    const seen: Array<[string, boolean]> = [];
    const stop = await kv.watch!("w.>", (k, e) => seen.push([k, e !== null]));
    await kv.put("w.b", enc.encode("2"));
    await kv.delete("w.a");
    for (let i = 0; i < 50 && seen.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    stop();
    expect(seen).toEqual([
      ["w.a", true],
      ["w.b", true],
      ["w.a", false],
    ]);
  });
});

// As on a replicated bucket (each read also asks the stream leader) and on a bucket of one replica.
describe.each([true, false])("group reads from the bucket stream (replicated: %s)", (replicated) => {
  const reads = {
    snapshot: (filter: string) => streamReads(nc, jsm, "ADAPTER_TEST", replicated).snapshot(filter),
    changes: (filter: string, after: number) => streamReads(nc, jsm, "ADAPTER_TEST", replicated).changes(filter, after),
  };
  const values = (entries: Array<{ key: string; value: Uint8Array }>) => Object.fromEntries(entries.map((e) => [e.key, dec.decode(e.value)]));

  it("loads only the live keys under a filter, then exactly what changed since", async () => {
    await kv.put("t.ch1.a", enc.encode("a1"));
    await kv.put("m.ch1.b", enc.encode("b1"));
    await kv.put("t.ch2.a", enc.encode("other channel"));
    await kv.put("t.ch1.gone", enc.encode("x"));
    await kv.delete("t.ch1.gone");
    await kv.put("m.ch1.purged", enc.encode("y"));
    await bucket.purge("m.ch1.purged");
    const snap = await reads.snapshot("*.ch1.*");
    expect(values(snap.entries)).toEqual({ "t.ch1.a": "a1", "m.ch1.b": "b1" });
    expect(await reads.changes("*.ch1.*", snap.revision)).toEqual({ changes: [], revision: snap.revision });

    await kv.put("m.ch1.b", enc.encode("b2"));
    await kv.delete("t.ch1.a");
    await kv.put("t.ch2.b", enc.encode("still another channel"));
    const r = await reads.changes("*.ch1.*", snap.revision);
    expect(r!.changes.map((c) => [c.key, c.entry && dec.decode(c.entry.value)])).toEqual([
      ["m.ch1.b", "b2"],
      ["t.ch1.a", null],
    ]);
    expect(r!.revision).toBe(r!.changes[1].revision);
    expect(values((await reads.snapshot("*.ch1.*")).entries)).toEqual({ "m.ch1.b": "b2" });
    expect(await reads.snapshot("*.nobody.*")).toEqual({ entries: [], revision: 0, last: 0 });
    // The filter's last message is the deletion of t.ch1.a: what a write `within` it compares with.
    expect((await reads.snapshot("*.ch1.*")).last).toBe(r!.revision);
  });

  it("reads a single key from the leader, and its change", async () => {
    const first = await kv.put("sel.one", enc.encode("p1"));
    expect(values((await reads.snapshot("sel.one")).entries)).toEqual({ "sel.one": "p1" });
    expect((await reads.changes("sel.one", first))!.changes).toEqual([]);
    await kv.put("sel.one", enc.encode("p2"));
    const r = await reads.changes("sel.one", first);
    expect(r!.changes.map((c) => c.entry && dec.decode(c.entry.value))).toEqual(["p2"]);
    await kv.delete("sel.one");
    expect((await reads.changes("sel.one", r!.revision))!.changes.map((c) => c.entry)).toEqual([null]);
    expect((await reads.snapshot("sel.one")).entries).toEqual([]);
  });

  it("loads a group of more than 1,024 keys (more than one batched get may hold) in full", async () => {
    await Promise.all(Array.from({ length: 1_100 }, (_, i) => kv.put(`t.big.k${i}`, enc.encode(String(i)))));
    await kv.delete("t.big.k5");
    const snap = await reads.snapshot("*.big.*");
    expect(snap.entries).toHaveLength(1_099);
    expect(values(snap.entries)["t.big.k1099"]).toBe("1099");
  });

  it("asks for a reload when more changed than one batch lists", async () => {
    const at = await kv.put("t.busy.start", enc.encode("0"));
    await Promise.all(Array.from({ length: 300 }, (_, i) => kv.put(`t.busy.k${i}`, enc.encode(String(i)))));
    expect(await reads.changes("*.busy.*", at)).toBeNull();
  });
});
