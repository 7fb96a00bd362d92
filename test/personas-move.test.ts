// A channel's persona selection kept with its memory, over a real nats-server: a selection
// made on one instance is what the next chat on another uses; selections stored by earlier
// versions (sel.<channel> in the personas bucket) are used where they are until the
// background move has put them under the channel's keys (p.<channel>.sel in the memory
// bucket), which it does once, losing nothing when instances move at once, never replacing a
// selection made since.
import { connect, type KV, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as chat from "../handlers/chat";
import * as personaGet from "../handlers/persona_get";
import * as personaSet from "../handlers/persona_set";
import { defaultConfig } from "../lib/config";
import type { Ctx, Events } from "../lib/context";
import { encodeName } from "../lib/keys";
import type { Kv } from "../lib/kv";
import { silentLogger } from "../lib/log";
import { createMemory, type MemoryService } from "../lib/memory";
import { createPersonas, type PersonasService } from "../lib/personas";
import { MOVED_KEY } from "../lib/personas/move";
import type { Providers } from "../lib/context";
import { natsKv } from "../runtime/kv";
import { streamReads } from "../runtime/kv-reads";
import { BUCKETS, provisionBuckets } from "../runtime/provision";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

const enc = new TextEncoder();
const dec = new TextDecoder();
const NAMES = ["concise", "technical", "creative"];
const legacyKey = (channel: string) => `sel.${encodeName(channel)}`;
const newKey = (channel: string) => `p.${encodeName(channel)}.sel`;

let srv: TestServer;
let root: NatsConnection;
const conns: NatsConnection[] = [];
const opened: Array<{ memory: MemoryService; personas: PersonasService }> = [];

/** A server of its own for each block: what one block moved and deleted stays out of the other's walks. */
function useServer(): void {
  beforeAll(async () => {
    srv = await startTestServer();
    root = await client(srv.url);
  });
  afterAll(async () => {
    for (const o of opened.splice(0)) {
      await o.personas.close();
      await o.memory.settled();
    }
    await Promise.all(conns.splice(0).map((c) => c.drain().catch(() => {})));
    await root?.close();
    await srv?.cleanup();
  });
}

/** The buckets as the runtime provisions them, seen through a connection of the test's. */
async function views(): Promise<{ personas: KV; memory: KV }> {
  const b = await provisionBuckets(root.jetstream(), defaultConfig());
  return { personas: b.personas, memory: b.memory };
}

/** Stores selections where earlier versions kept them. */
async function storeLegacy(personas: KV, channels: string[], name = (i: number) => NAMES[i % NAMES.length]): Promise<void> {
  for (const [i, c] of channels.entries()) await personas.put(legacyKey(c), enc.encode(JSON.stringify({ persona: name(i) })));
}

const keysOf = async (kv: KV, filter: string) => {
  const out: string[] = [];
  for await (const k of await kv.keys(filter)) out.push(k);
  return out;
};

/** Waits (bounded) until some instance has recorded that the move is finished. */
async function moved(personas: KV): Promise<void> {
  for (let i = 0; i < 400 && !(await personas.get(MOVED_KEY))?.value.length; i++) await new Promise((r) => setTimeout(r, 50));
}

describe("the selection a chat uses, across instances", () => {
  useServer();
  const instances: TestInstance[] = [];
  let a: TestInstance;
  let b: TestInstance;
  let nc: NatsConnection;

  beforeAll(async () => {
    const { personas } = await views();
    await storeLegacy(personas, Array.from({ length: 300 }, (_, i) => `#old${i}`));
    // Both instances start with legacy selections stored: both walk them at once.
    [a, b] = await Promise.all([startInstance(srv.url), startInstance(srv.url)]);
    instances.push(a, b);
    nc = await client(srv.url);
  });

  afterAll(async () => {
    await nc?.close();
    await Promise.all(instances.map((i) => i.stop()));
  });

  let users = 0;
  const chatOn = (inst: TestInstance, channel: string) =>
    chat.handle({ channel, user: `user${users++}`, message: "hello" }, { ...inst.ctx, admin: false } as Ctx);
  const setOn = (inst: TestInstance, channel: string, persona: string) => personaSet.handle({ channel, persona }, { ...inst.ctx, admin: false } as Ctx);

  it("a chat on one instance uses the persona selected on the other just before, cached or not", async () => {
    for (let i = 0; i < 20; i++) {
      const channel = `#rw${i % 4}`;
      const [from, to] = i % 2 ? [a, b] : [b, a];
      // The channel is held by the chatting instance from the second round on.
      await setOn(from, channel, NAMES[i % NAMES.length]);
      expect((await chatOn(to, channel)).persona, `round ${i}`).toBe(NAMES[i % NAMES.length]);
    }
  });

  it("chats see legacy selections while they are moved, and after", async () => {
    const channels = Array.from({ length: 300 }, (_, i) => `#old${i}`);
    // Whenever the move gets to them: over NATS, either instance answering.
    const before = await Promise.all(channels.slice(0, 30).map((channel, i) => request(nc, "rosey.llm.chat", { channel, user: `early${i}`, message: "hi" })));
    expect(before.map((r) => r.body.persona)).toEqual(channels.slice(0, 30).map((_, i) => NAMES[i % NAMES.length]));
    const { personas, memory } = await views();
    await moved(personas);
    expect(await keysOf(personas, "sel.*")).toEqual([]);
    const stored = await Promise.all(channels.map(async (c) => JSON.parse(dec.decode((await memory.get(newKey(c)))!.value)).persona));
    expect(stored).toEqual(channels.map((_, i) => NAMES[i % NAMES.length]));
    for (const [i, channel] of channels.entries()) {
      if (i % 25 !== 0) continue;
      expect((await request(nc, "rosey.llm.persona.get", { channel })).body.persona.name).toBe(NAMES[i % NAMES.length]);
      expect((await chatOn(i % 2 ? a : b, channel)).persona).toBe(NAMES[i % NAMES.length]);
    }
  });
});

describe("the move of legacy selections, step by step", () => {
  useServer();
  const events: Events = { emit: () => "event", flush: async () => {} };

  /** An instance's memory and personas over the shared buckets; its move not started. */
  async function instance(batch = 4): Promise<{ memory: MemoryService; personas: PersonasService; kv: Kv; scans: () => number }> {
    const nc = await connect({ servers: srv.url });
    conns.push(nc);
    const jsm = await nc.jetstreamManager();
    const config = defaultConfig();
    const b = await provisionBuckets(nc.jetstream(), config);
    const grouped = (bucket: KV, name: string) => ({ ...natsKv(bucket, name, jsm), ...streamReads(nc, jsm, name, false) });
    const memory = createMemory({ kv: grouped(b.memory, BUCKETS.memory), config, clock: { now: () => Date.now() }, events, providers: {} as Providers, log: silentLogger });
    let scans = 0;
    const raw = grouped(b.personas, BUCKETS.personas);
    const kv: Kv = { ...raw, scan: (...args) => (scans++, raw.scan(...args)) };
    const personas = createPersonas({ kv, selections: memory.selections, config, log: silentLogger, move: { batch } });
    opened.push({ memory, personas });
    return { memory, personas, kv, scans: () => scans };
  }

  /** The persona a chat of the channel would use (its memory read ahead, as chat does). */
  const chatPersona = async (i: { memory: MemoryService; personas: PersonasService }, channel: string) =>
    (await i.personas.forChannel(channel, undefined, i.memory.prepare(channel))).name;

  const clear = async (kv: KV) => {
    for (const k of await keysOf(kv, ">")) await kv.purge(k);
  };

  it("reads a legacy selection before, during and after the move, and keeps a selection made since", async () => {
    const { personas: pv, memory: mv } = await views();
    await clear(pv);
    const channels = Array.from({ length: 10 }, (_, i) => `#step ${i}.*>`);
    await storeLegacy(pv, channels);
    // Stored under the new key while the legacy one is still there (its instance stopped
    // between the two writes): the newer one.
    await mv.put(newKey(channels[0]), enc.encode(JSON.stringify({ persona: "default", at: Date.now() })));
    const walker = await instance(3);
    const other = await instance();
    const want = channels.map((_, i) => (i === 0 ? "default" : NAMES[i % NAMES.length]));
    const seen = async () => ({ walker: await Promise.all(channels.map((c) => chatPersona(walker, c))), other: await Promise.all(channels.map((c) => chatPersona(other, c))) });
    expect(await seen()).toEqual({ walker: want, other: want });
    let steps = 0;
    while (!(await walker.personas.move.step())) {
      steps++;
      expect(await seen()).toEqual({ walker: want, other: want });
    }
    // 10 keys, 3 a step (and the markers of the keys it deleted, met after them).
    expect(steps).toBeGreaterThanOrEqual(3);
    expect(walker.personas.move.finished()).toBe(true);
    expect(await keysOf(pv, "sel.*")).toEqual([]);
    expect(await seen()).toEqual({ walker: want, other: want });
    expect(JSON.parse(dec.decode((await mv.get(newKey(channels[0])))!.value)).persona).toBe("default");
    // The other instance learns that the move is finished from one key, and walks nothing.
    expect(await other.personas.move.step()).toBe(true);
    expect(other.scans()).toBe(0);
    // A restart: the same.
    const later = await instance();
    expect(await later.personas.move.step()).toBe(true);
    expect(later.scans()).toBe(0);
    expect(await chatPersona(later, channels[1])).toBe(NAMES[1]);
  });

  it("loses nothing when two instances move at once while channels select personas", async () => {
    const { personas: pv, memory: mv } = await views();
    await clear(pv);
    const channels = Array.from({ length: 60 }, (_, i) => `#race${i}`);
    await storeLegacy(pv, channels);
    const [x, y, z] = await Promise.all([instance(7), instance(5), instance()]);
    // Every fifth channel selects anew during the move, on the third instance.
    const picks = channels.filter((_, i) => i % 5 === 0);
    const selecting = (async () => {
      for (const c of picks) await personaSet.handle({ channel: c, persona: "default" }, { personas: z.personas, writes: { admit: async () => {} } } as unknown as Ctx);
    })();
    let done = false;
    while (!done) done = (await Promise.all([x.personas.move.step(), y.personas.move.step()])).every(Boolean);
    await selecting;
    const want = channels.map((c, i) => (picks.includes(c) ? "default" : NAMES[i % NAMES.length]));
    expect(await keysOf(pv, "sel.*")).toEqual([]);
    const stored = await Promise.all(channels.map(async (c) => JSON.parse(dec.decode((await mv.get(newKey(c)))!.value)).persona));
    expect(stored).toEqual(want);
    for (const i of [x, y, z]) {
      expect(await Promise.all(channels.map((c) => chatPersona(i, c)))).toEqual(want);
      expect((await personaGet.handle({ channel: channels[1] }, { personas: i.personas } as unknown as Ctx)).persona?.name).toBe(NAMES[1]);
    }
  });

  it("a selection made during the move deletes the legacy key; one made after it leaves the personas bucket alone", async () => {
    const { personas: pv } = await views();
    await clear(pv);
    await storeLegacy(pv, ["#during", "#after"]);
    const i = await instance();
    await i.personas.select("#during", "creative");
    expect(await keysOf(pv, "sel.*")).toEqual([legacyKey("#after")]);
    expect(await chatPersona(i, "#during")).toBe("creative");
    while (!(await i.personas.move.step()));
    const before = (await pv.status()).values;
    await i.personas.select("#after", "concise");
    expect((await pv.status()).values).toBe(before);
    expect(await chatPersona(i, "#after")).toBe("concise");
  });

  it("drops a legacy key that holds no selection, or names no channel, and moves the rest", async () => {
    const { personas: pv, memory: mv } = await views();
    await clear(pv);
    await pv.put(legacyKey("#bad"), enc.encode("not json"));
    // Not base64url, and not as encodeName writes "a" (YQ): no channel's selection.
    await pv.put("sel.a=", enc.encode(JSON.stringify({ persona: "concise" })));
    await pv.put("sel.YR", enc.encode(JSON.stringify({ persona: "concise" })));
    await storeLegacy(pv, ["#good"]);
    const i = await instance();
    expect(await chatPersona(i, "#bad")).toBe("default");
    while (!(await i.personas.move.step()));
    expect(await keysOf(pv, "sel.*")).toEqual([]);
    expect(await keysOf(mv, `p.${encodeName("#bad")}.*`)).toEqual([]);
    expect(await chatPersona(i, "#good")).toBe(NAMES[0]);
  });
});
