// The nats KV adapter against a real server: compare-and-set conflicts, key listing from the
// stream's subject list (complete, filtered, tolerant of deleted keys) and the watch.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { isKvConflict, type Kv } from "../lib/kv";
import { natsKv } from "../runtime/kv";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client } from "./helpers/service";

let srv: TestServer;
let nc: NatsConnection;
let kv: Kv;
const enc = new TextEncoder();

beforeAll(async () => {
  srv = await startTestServer();
  nc = await client(srv.url);
  kv = natsKv(await nc.jetstream().views.kv("ADAPTER_TEST", { history: 1 }), "ADAPTER_TEST", await nc.jetstreamManager());
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
