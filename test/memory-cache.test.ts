// Memory and personas of several instances over one real nats-server, each holding only the
// channels it uses: what one instance stored is seen by another's very next read, an
// evicted channel comes back whole, the cache stays within its limits, resets cost what
// the channel holds now, and bad values or failed reads are survived.
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { defaultConfig, type ConfigInput } from "../lib/config";
import type { Events } from "../lib/context";
import { encodeName } from "../lib/keys";
import type { Kv } from "../lib/kv";
import { createLogger, silentLogger } from "../lib/log";
import { createMemory, type MemoryService } from "../lib/memory";
import { BUILTIN_PERSONAS, createPersonas, type PersonasService } from "../lib/personas";
import { createProviders } from "../lib/providers";
import { natsKv } from "../runtime/kv";
import { streamReads } from "../runtime/kv-reads";
import { BUCKETS, provisionBuckets } from "../runtime/provision";
import { startTestServer, type TestServer } from "./helpers/nats";
import { storedData } from "./helpers/stored-context";

const persona = BUILTIN_PERSONAS[0];
const enc = new TextEncoder();
let srv: TestServer;
const conns: NatsConnection[] = [];
const memories: MemoryService[] = [];

const providers = createProviders(defaultConfig(), { log: silentLogger, clock: { now: () => Date.now() } });
const events: Events = { emit: () => "event", flush: async () => {} };

interface Instance {
  mem: MemoryService;
  personas: PersonasService;
  /** The memory bucket as this instance sees it. */
  kv: Kv;
  /** Keys this instance deleted from the memory bucket so far. */
  deletes(): number;
  nc: NatsConnection;
}

/** One instance: its own connection, memory and personas over the shared buckets. */
async function instance(memory: Partial<ConfigInput["memory"]> = {}, log = silentLogger, wrap = (kv: Kv) => kv): Promise<Instance> {
  const nc = await connect({ servers: srv.url });
  conns.push(nc);
  const jsm = await nc.jetstreamManager();
  const config = defaultConfig({ memory: memory as never });
  // The buckets as the runtime provisions them: history keys carry a TTL, markers expire.
  const b = await provisionBuckets(nc.jetstream(), config);
  const base = { ...natsKv(b.memory, BUCKETS.memory, jsm), ...streamReads(nc, jsm, BUCKETS.memory, false) };
  let deletes = 0;
  const kv = wrap({
    ...base,
    delete: (k: string) => {
      deletes++;
      return base.delete(k);
    },
  });
  const mem = createMemory({ kv, config, clock: { now: () => Date.now() }, events, providers, log });
  memories.push(mem);
  const personas = createPersonas({
    kv: { ...natsKv(b.personas, BUCKETS.personas, jsm), ...streamReads(nc, jsm, BUCKETS.personas, false) },
    selections: mem.selections,
    config,
    log,
  });
  return { mem, personas, kv, nc, deletes: () => deletes };
}

/** Messages the memory bucket's stream holds in all (every write, delete markers included). */
async function bucketWrites(nc: NatsConnection): Promise<number> {
  return (await (await nc.jetstreamManager()).streams.info(`KV_${BUCKETS.memory}`)).state.last_seq;
}

beforeAll(async () => {
  srv = await startTestServer();
});

afterAll(async () => {
  await Promise.all(memories.map((m) => m.settled()));
  await Promise.all(conns.map((c) => c.drain().catch(() => {})));
  await srv?.cleanup();
});

describe("read-your-writes across three instances, each holding the channels in its cache", () => {
  const CHANNELS = Array.from({ length: 10 }, (_, i) => `#ryw-${i}`);
  let trio: Instance[];

  beforeAll(async () => {
    trio = await Promise.all([instance(), instance(), instance()]);
    // Every instance holds every channel before the writes begin: nothing is read cold.
    for (const x of trio) for (const ch of CHANNELS) await x.mem.record(ch, "setup", "hello", "hi");
    for (const x of trio) for (const ch of CHANNELS) await x.mem.recall({ channel: ch, query: "anything", limit: 1 });
  });

  it("300 memories added on one instance are each recalled by the next instance's very next request", async () => {
    let misses = 0;
    for (let i = 0; i < 300; i++) {
      const channel = CHANNELS[i % CHANNELS.length];
      const fact = `visitor${i} likes colour${i} and number${i}`;
      const added = await trio[i % 3].mem.add({ channel, content: fact, category: "fact", importance: 3 });
      const got = await trio[(i + 1) % 3].mem.recall({ channel, query: `colour${i} number${i}`, limit: 1 });
      if (got[0]?.id !== added.id) misses++;
    }
    expect(misses).toBe(0);
  });

  it("300 chats recorded on one instance are each in the next instance's context", async () => {
    let misses = 0;
    for (let i = 0; i < 300; i++) {
      const channel = CHANNELS[i % CHANNELS.length];
      await trio[i % 3].mem.record(channel, `u${i}`, `message ${i}`, `reply ${i}`);
      const ctx = await trio[(i + 2) % 3].mem.context(channel, "next", "what now?", persona);
      if (ctx.at(-3)?.content !== `u${i}: message ${i}` || ctx.at(-2)?.content !== `reply ${i}`) misses++;
    }
    expect(misses).toBe(0);
  });

  it("300 persona selections are each seen by the next instance, as are definitions", async () => {
    const names = ["concise", "technical", "creative", "default"];
    let misses = 0;
    for (let i = 0; i < 300; i++) {
      const channel = CHANNELS[i % CHANNELS.length];
      await trio[i % 3].personas.select(channel, names[i % names.length]);
      if ((await trio[(i + 1) % 3].personas.forChannel(channel)).name !== names[i % names.length]) misses++;
    }
    for (let i = 0; i < 30; i++) {
      await trio[i % 3].personas.define({ name: `guide${i % 4}`, description: "", system_prompt: `Version ${i}.` });
      if ((await trio[(i + 1) % 3].personas.get(`guide${i % 4}`))?.system_prompt !== `Version ${i}.`) misses++;
    }
    expect(misses).toBe(0);
  });

  it("a reset on one instance empties the history every other instance sees next", async () => {
    let misses = 0;
    for (let i = 0; i < 60; i++) {
      const channel = CHANNELS[i % CHANNELS.length];
      await trio[i % 3].mem.record(channel, "u", `before reset ${i}`, "ok");
      await trio[(i + 1) % 3].mem.context(channel, "u", "warm", persona);
      await trio[(i + 2) % 3].mem.reset(channel);
      const ctx = await trio[(i + 1) % 3].mem.context(channel, "u", "after", persona);
      // No history and no summary: the persona, the quoted facts if any, and the new message.
      const stored = storedData(ctx);
      const rest = ctx.filter((m, i) => m.role !== "system" && i !== stored?.index);
      if (rest.length !== 1 || (stored?.summaries.length ?? 0) > 0) misses++;
    }
    expect(misses).toBe(0);
  });
});

describe("a bounded cache", () => {
  it("evicts channels past its count, and a channel evicted on one instance comes back whole on another", async () => {
    const a = await instance({ cache_channels: 2 });
    const b = await instance({ cache_channels: 2 });
    for (let c = 0; c < 6; c++) {
      const channel = `#evict-${c}`;
      await a.mem.add({ channel, content: `channel ${c} keeps the key under the mat`, category: "fact", importance: 2 });
      await a.mem.record(channel, "ann", `question in ${c}`, `answer in ${c}`);
      await a.mem.context(channel, "ann", "warm", persona);
      expect(a.mem.cached().channels).toBeLessThanOrEqual(2);
    }
    // #evict-0 left a's cache long ago: b reads it cold, then a reads it again.
    for (const x of [b, a]) {
      const got = await x.mem.recall({ channel: "#evict-0", query: "key mat", limit: 5 });
      expect(got.map((m) => m.content)).toEqual(["channel 0 keeps the key under the mat"]);
      const ctx = await x.mem.context("#evict-0", "bob", "where?", persona);
      expect(ctx.map((m) => m.content)).toContain("ann: question in 0");
      expect(ctx.map((m) => m.content)).toContain("answer in 0");
    }
    await b.mem.add({ channel: "#evict-1", content: "added while evicted from a", category: "fact", importance: 2 });
    expect((await a.mem.recall({ channel: "#evict-1", query: "evicted", limit: 5 })).map((m) => m.content)).toEqual(["added while evicted from a"]);
  });

  it("stays within its count and byte limits under churn over many channels", async () => {
    const x = await instance({ cache_channels: 40, cache_mb: 1 });
    const long = "a long remembered sentence about gardens, boats and weather ".repeat(120);
    for (let c = 0; c < 300; c++) {
      const channel = `#churn-${c}`;
      await x.mem.add({ channel, content: `${long} ${c}`, category: "fact", importance: 2 });
      await x.mem.record(channel, "u", `${long} question`, `${long} answer`);
      await x.mem.context(channel, "u", "hi", persona);
      const { channels, bytes } = x.mem.cached();
      expect(channels).toBeLessThanOrEqual(40);
      expect(bytes).toBeLessThanOrEqual(1024 * 1024);
    }
    // Each channel holds ~22,000 characters: 1 MB is what bounds the cache here, not the count.
    expect(x.mem.cached().channels).toBeLessThan(40);
    expect(x.mem.cached().channels).toBeGreaterThan(0);
  });
});

describe("deletes cost what the channel holds now", () => {
  it("a reset deletes only the live keys, however many the channel had", async () => {
    const x = await instance({ summarize_after: 10, history_messages: 4 });
    for (let i = 0; i < 40; i++) {
      await x.mem.record("#long", "u", `q${i}`, `a${i}`);
      await x.mem.settled();
    }
    // Summaries deleted most exchanges; what is left is a few exchanges, summaries and no claim.
    const ctx = await x.mem.context("#long", "u", "?", persona);
    const live = storedData(ctx)?.summaries.length ?? 0;
    expect(live).toBeGreaterThan(0);
    const before = x.deletes();
    await x.mem.reset("#long");
    const history = (await x.kv.snapshot!(`*.${encodeName("#long")}.*`)).entries;
    expect(history).toEqual([]);
    expect(x.deletes() - before).toBeLessThan(20); // 40 exchanges were ever written
  });

  it("an exchange that expires is gone from the next read of an instance holding its channel", async () => {
    const x = await instance();
    await x.mem.record("#expiring", "ann", "kept question", "kept answer");
    // An exchange written with a one-second TTL, as history keys are written with theirs.
    const exchange = { user: "ann", message: "short-lived question", reply: "short-lived answer", at: Date.now() };
    await x.kv.create(`t.${encodeName("#expiring")}.000000001-00000-ttl`, enc.encode(JSON.stringify(exchange)), { ttlSeconds: 1 });
    const history = async () => (await x.mem.context("#expiring", "bob", "?", persona)).slice(1, -1).map((m) => m.content);
    expect(await history()).toEqual(["ann: short-lived question", "short-lived answer", "ann: kept question", "kept answer"]);
    await vi.waitFor(async () => expect(await history()).toEqual(["ann: kept question", "kept answer"]), { timeout: 10_000, interval: 200 });
  });

  it("forget and reset on a channel never used store nothing and hold nothing", async () => {
    const x = await instance();
    const writes = await bucketWrites(x.nc);
    expect(await x.mem.forget({ channel: "#never-used", user_id: "nobody" })).toBe(0);
    expect(await x.mem.forget({ channel: "#never-used-2", id: "AAAAAAAAAAAAAAAAAAAAAA" })).toBe(0);
    await x.mem.reset("#never-used-3");
    expect(await x.mem.recall({ channel: "#never-used-4", query: "anything", limit: 3 })).toEqual([]);
    expect(await bucketWrites(x.nc)).toBe(writes);
    expect(x.mem.cached()).toEqual({ channels: 0, bytes: 0 });
  });
});

describe("failures", () => {
  it("skips malformed stored values with a log line naming the key, not quoting the value", async () => {
    const lines: string[] = [];
    const x = await instance({}, createLogger("warn", {}, (l) => lines.push(l)));
    const ch = encodeName("#broken");
    const secret = "value-that-must-not-be-logged";
    await x.mem.add({ channel: "#broken", content: "the good memory about tea", category: "fact", importance: 2 });
    await x.mem.record("#broken", "ann", "good question", "good answer");
    const bad = [`m.${ch}.bad1`, `t.${ch}.0000bad`, `s.${ch}.0000bad`, `p.${ch}.sel`];
    await x.kv.put(bad[0], enc.encode(JSON.stringify({ id: "other", content: secret })));
    await x.kv.put(bad[1], enc.encode(`{not json ${secret}`));
    await x.kv.put(bad[2], enc.encode(JSON.stringify({ summary: 42, secret })));
    await x.kv.put(bad[3], enc.encode(JSON.stringify({ name: secret })));
    // A kind of key this version does not know (a later one may): not read, not logged.
    const unknown = `l.${ch}.doc`;
    await x.kv.put(unknown, enc.encode(`not json ${secret}`));
    const y = await instance({}, createLogger("warn", {}, (l) => lines.push(l)));
    for (const z of [x, y]) {
      expect((await z.mem.recall({ channel: "#broken", query: "tea", limit: 3 })).map((m) => m.content)).toEqual(["the good memory about tea"]);
      const ctx = await z.mem.context("#broken", "bob", "any tea?", persona);
      expect(storedData(ctx)).toEqual({ index: 1, summaries: [], facts: [{ about: null, text: "the good memory about tea" }] });
      expect(ctx.slice(2).map((m) => m.content)).toEqual(["ann: good question", "good answer", "bob: any tea?"]);
    }
    const skipped = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === "memory: unreadable entry skipped");
    expect(new Set(skipped.map((l) => l.key))).toEqual(new Set(bad));
    expect(lines.join("\n")).not.toContain(secret);
    // A reset deletes an unreadable exchange or summary too: it is the channel's history; the
    // memories, the persona selection and keys of other kinds stay.
    await y.mem.reset("#broken");
    const good = `m.${ch}.${(await x.mem.recall({ channel: "#broken", query: "tea", limit: 1 }))[0].id}`;
    expect((await x.kv.snapshot!(`*.${ch}.*`)).entries.map((e) => e.key).sort()).toEqual([bad[0], good, bad[3], unknown].sort());
  });

  it("a read that fails fails its request only; the channel is read again on next use, nothing lost", async () => {
    let failNext = 0;
    const lines: string[] = [];
    const faulty = (kv: Kv): Kv => ({
      ...kv,
      changes: (filter, after) => (failNext-- > 0 ? Promise.reject(new Error("injected: stream read failed")) : kv.changes!(filter, after)),
    });
    const x = await instance({}, createLogger("warn", {}, (l) => lines.push(l)), faulty);
    const other = await instance();
    await x.mem.add({ channel: "#faulty", content: "first fact about owls", category: "fact", importance: 2 });
    await x.mem.recall({ channel: "#faulty", query: "owls", limit: 1 });
    await other.mem.add({ channel: "#faulty", content: "second fact about owls", category: "fact", importance: 2 });
    failNext = 1;
    await expect(x.mem.recall({ channel: "#faulty", query: "owls", limit: 5 })).rejects.toThrow("injected");
    expect(lines.some((l) => JSON.parse(l).msg === "memory: reading from the bucket failed; loading again on next use")).toBe(true);
    const got = await x.mem.recall({ channel: "#faulty", query: "owls", limit: 5 });
    expect(got.map((m) => m.content).sort()).toEqual(["first fact about owls", "second fact about owls"]);
  });
});
