// Expiring keys and markers on a real nats-server: buckets provisioned with their limits (and
// brought to them when they already exist), keys written with a TTL disappear, delete markers
// expire so listings and replays stop returning dead keys, and compare-and-set still
// conflicts exactly with TTL writes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiscardPolicy, StorageType, connect, type JetStreamManager, type NatsConnection } from "nats";
import { defaultConfig } from "../lib/config";
import { MemoryKv, isKvConflict, type Kv, type KvEntry } from "../lib/kv";
import { natsKv } from "../runtime/kv";
import { BUCKETS, leaderTolerant, provisionBuckets, provisionStream, type Buckets } from "../runtime/provision";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client } from "./helpers/service";

let srv: TestServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
let buckets: Buckets;
let kv: Kv;
const enc = new TextEncoder();
const config = defaultConfig({ storage: { marker_ttl_seconds: 1, memory_max_bytes: 8 * 1024 * 1024 } as never });

/** Polls `check` every 100 ms for up to 15 s (expiry runs on the server's timers). */
async function eventually(check: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 150; i++) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** Messages the memory bucket's stream holds for one key (0 once even its marker is gone). */
async function stored(key: string): Promise<number> {
  const subject = `$KV.${BUCKETS.memory}.${key}`;
  return (await jsm.streams.info(`KV_${BUCKETS.memory}`, { subjects_filter: subject })).state.subjects?.[subject] ?? 0;
}

beforeAll(async () => {
  srv = await startTestServer();
  nc = await client(srv.url);
  jsm = await nc.jetstreamManager();
  // An existing deployment from before limits: a bucket with only a max age, and a value in it.
  const old = await nc.jetstream().views.kv(BUCKETS.usage, { history: 1, ttl: 400 * 86_400_000, storage: StorageType.File });
  await old.put("d.2024-01-01.u.YQ", enc.encode('{"requests":1,"tokens":2,"by_provider":{}}'));
  buckets = await provisionBuckets(nc.jetstream(), config);
  kv = natsKv(buckets.memory, BUCKETS.memory, jsm);
});
afterAll(async () => {
  await nc?.close();
  await srv?.cleanup();
});

describe("provisioning", () => {
  it("gives every bucket its limits, and brings an existing one to them without losing data", async () => {
    const want = {
      limits: { max_age: 48 * 3600e9, max_bytes: 256 * 2 ** 20, discard: DiscardPolicy.New },
      usage: { max_age: 400 * 86400e9, max_bytes: 512 * 2 ** 20, discard: DiscardPolicy.Old },
      personas: { max_age: 0, max_bytes: 64 * 2 ** 20, discard: DiscardPolicy.New },
      memory: { max_age: 91 * 86400e9, max_bytes: 8 * 2 ** 20, discard: DiscardPolicy.New },
    };
    for (const [k, limits] of Object.entries(want)) {
      const c = (await jsm.streams.info(`KV_${BUCKETS[k as keyof typeof BUCKETS]}`)).config as unknown as Record<string, unknown>;
      expect(c).toMatchObject({ ...limits, allow_msg_ttl: true, subject_delete_marker_ttl: 1e9, max_msgs_per_subject: 1 });
    }
    const kept = await natsKv(buckets.usage, BUCKETS.usage).get("d.2024-01-01.u.YQ");
    expect(new TextDecoder().decode(kept!.value)).toContain('"requests":1');
  });

  it("changes nothing when the buckets already match, and follows a changed setting", async () => {
    const before = await jsm.streams.info(`KV_${BUCKETS.personas}`);
    await provisionBuckets(nc.jetstream(), config);
    expect((await jsm.streams.info(`KV_${BUCKETS.personas}`)).config).toEqual(before.config);
    await provisionBuckets(nc.jetstream(), defaultConfig({ storage: { ...config.storage, personas_max_bytes: 1_000_000 } }));
    expect((await jsm.streams.info(`KV_${BUCKETS.personas}`)).config.max_bytes).toBe(1_000_000);
  });

  it("stops the start naming the setting when the server cannot hold a store's size", async () => {
    const small = await startTestServer({
      config: 'accounts { SMALL: { jetstream: { max_file: 100MB }, users: [{ user: small, password: small }] } }',
    });
    const snc = await connect({ servers: small.url, user: "small", pass: "small" });
    try {
      await expect(provisionStream(await snc.jetstreamManager(), defaultConfig())).rejects.toThrow(
        /cannot give ROSEY_LLM_EVENTS 1073741824 bytes, set by ROSEY_EVENTS_MAX_BYTES \(events.max_bytes\): .*lower the setting/,
      );
      await expect(provisionBuckets(snc.jetstream(), defaultConfig())).rejects.toThrow(/set by ROSEY_[A-Z]+_MAX_BYTES \(storage\.[a-z]+_max_bytes\): .*lower the setting/);
    } finally {
      await snc.close();
      await small.cleanup();
    }
  });
});

describe("keys with a TTL", () => {
  it("carry the TTL to the server and disappear from get and key listings once it runs out", async () => {
    await kv.put("ttl.a", enc.encode("1"), { ttlSeconds: 1 });
    await kv.put("ttl.keep", enc.encode("2"));
    const msg = await jsm.streams.getMessage(`KV_${BUCKETS.memory}`, { last_by_subj: `$KV.${BUCKETS.memory}.ttl.a` });
    expect(msg.header.get("Nats-TTL")).toBe("1s");
    expect(await kv.get("ttl.a")).not.toBeNull();
    expect(await eventually(async () => (await kv.get("ttl.a")) === null)).toBe(true);
    // The server's own marker of the expiry goes too, after the marker TTL.
    expect(await eventually(async () => (await stored("ttl.a")) === 0)).toBe(true);
    expect(await kv.keys("ttl.>")).toEqual(["ttl.keep"]);
  });

  it("compare-and-set conflicts exactly as without one, and an expired key can be created again", async () => {
    // A bucket whose expiry markers stay a minute, so create meets one.
    const js = nc.jetstream();
    await js.views.kv("MARKERS", { history: 1 });
    const info = await jsm.streams.info("KV_MARKERS");
    await jsm.streams.update("KV_MARKERS", { ...info.config, allow_msg_ttl: true, subject_delete_marker_ttl: 60e9 } as never);
    const m = natsKv(leaderTolerant(await js.views.kv("MARKERS"), js, "MARKERS", 5_000, 60), "MARKERS", jsm);
    const r = await m.create("cas.k", enc.encode("1"), { ttlSeconds: 1 });
    await expect(m.create("cas.k", enc.encode("2"), { ttlSeconds: 1 })).rejects.toSatisfy(isKvConflict);
    await expect(m.update("cas.k", enc.encode("2"), r + 7, { ttlSeconds: 1 })).rejects.toSatisfy(isKvConflict);
    const r2 = await m.update("cas.k", enc.encode("3"), r, { ttlSeconds: 1 });
    await expect(m.update("cas.k", enc.encode("4"), r, { ttlSeconds: 1 })).rejects.toSatisfy(isKvConflict);
    expect(await eventually(async () => (await m.get("cas.k")) === null)).toBe(true);
    const marker = await jsm.streams.getMessage("KV_MARKERS", { last_by_subj: "$KV.MARKERS.cas.k" });
    expect(marker.header.get("Nats-Marker-Reason")).toBe("MaxAge");
    // The key holds the server's expiry marker: create treats it as absent, an update on r2 conflicts.
    await expect(m.update("cas.k", enc.encode("5"), r2)).rejects.toSatisfy(isKvConflict);
    await m.create("cas.k", enc.encode("6"));
    await expect(m.create("cas.k", enc.encode("7"))).rejects.toSatisfy(isKvConflict);
    expect(new TextDecoder().decode((await m.get("cas.k"))!.value)).toBe("6");
  });

  it("is refused by a plain nats.js handle, which would drop it silently", async () => {
    const plain = natsKv(await nc.jetstream().views.kv(BUCKETS.memory), BUCKETS.memory);
    await expect(plain.put("plain.k", enc.encode("1"), { ttlSeconds: 5 })).rejects.toThrow(/cannot write a TTL/);
    expect(await kv.get("plain.k")).toBeNull();
  });

  it("tells a watch when a key expires", async () => {
    const seen: Array<[string, boolean]> = [];
    const stop = await kv.watch!("w.>", (k, e: KvEntry | null) => seen.push([k, e !== null]));
    await kv.put("w.a", enc.encode("1"), { ttlSeconds: 1 });
    expect(await eventually(async () => seen.length >= 2)).toBe(true);
    stop();
    expect(seen).toEqual([
      ["w.a", true],
      ["w.a", false],
    ]);
  });
});

describe("deleted keys", () => {
  it("leave a marker that expires: listings, replays and the stream forget them", async () => {
    await Promise.all(["del.a", "del.b", "del.c"].map((k) => kv.put(k, enc.encode(k))));
    await kv.delete("del.b");
    expect(await kv.get("del.b")).toBeNull();
    const marker = await jsm.streams.getMessage(`KV_${BUCKETS.memory}`, { last_by_subj: `$KV.${BUCKETS.memory}.del.b` });
    expect(marker.header.get("KV-Operation")).toBe("DEL");
    expect(marker.header.get("Nats-TTL")).toBe("1s");
    expect((await kv.keys("del.>")).sort()).toEqual(["del.a", "del.b", "del.c"]);
    expect(await eventually(async () => (await stored("del.b")) === 0)).toBe(true);
    expect((await kv.keys("del.>")).sort()).toEqual(["del.a", "del.c"]);
    // A new watch (a cache loading at start) replays only the live keys.
    const replayed: string[] = [];
    const stop = await kv.watch!("del.>", (k, e) => e && replayed.push(k));
    expect(await eventually(async () => replayed.length >= 2)).toBe(true);
    stop();
    expect(replayed.sort()).toEqual(["del.a", "del.c"]);
  });
});

describe("in-memory bucket", () => {
  it("expires TTL keys by its clock and tells watchers", async () => {
    const clock = { t: 1_000, now() { return this.t; } };
    const mem = new MemoryKv("T", clock);
    const gone: string[] = [];
    await mem.watch(">", (k, e) => e === null && gone.push(k));
    await mem.put("a", enc.encode("1"), { ttlSeconds: 2 });
    await mem.put("b", enc.encode("2"));
    const r = await mem.create("c", enc.encode("3"), { ttlSeconds: 1 });
    await mem.update("c", enc.encode("4"), r); // rewritten without a TTL: kept
    clock.t += 1_999;
    expect(await mem.keys()).toEqual(["a", "b", "c"]);
    clock.t += 1;
    expect(await mem.get("a")).toBeNull();
    expect(await mem.keys()).toEqual(["b", "c"]);
    expect(gone).toEqual(["a"]);
    await mem.create("a", enc.encode("again"));
    await expect(mem.put("x", enc.encode("1"), { ttlSeconds: 0.5 })).rejects.toThrow(/whole seconds/);
  });
});
