// Recall by meaning through the service, over a real nats-server and a local /v1/embeddings
// server: memories stored with their vectors in JetStream (never in replies or events),
// paraphrased questions answered by recall and chat, vectors loaded with the channel by
// another instance, a backfill of memories stored while embeddings were off, and lexical
// recall whenever the embeddings server is down, failing or slow.
import type { NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ConfigInput } from "../lib/config";
import { encodeName } from "../lib/keys";
import { decodeEmbedding } from "../lib/memory/embedding";
import { endpointSubject, type EndpointName } from "../lib/subjects";
import { natsKv } from "../runtime/kv";
import { BUCKETS } from "../runtime/provision";
import { startEmbeddingsServer, DIMENSIONS, type FakeEmbeddings } from "./helpers/embeddings-server";
import { startTestServer, type TestServer } from "./helpers/nats";
import { refusedUrl, startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";
import { loadParaphraseFixture } from "./helpers/paraphrase";
import { client, request, startInstance, type TestInstance } from "./helpers/service";
import { storedData } from "./helpers/stored-context";

const fixture = loadParaphraseFixture();
const MODEL = "concepts-1";
const KIDS = "Bob has two daughters";
const KIDS_QUESTION = "how many children does bob have?";

let srv: TestServer;
let emb: FakeEmbeddings;
let chat: FakeOpenAI;
let nc: NatsConnection;
const running = new Set<TestInstance>();

beforeAll(async () => {
  [srv, emb, chat] = await Promise.all([startTestServer(), startEmbeddingsServer(), startOpenAIServer()]);
  nc = await client(srv.url);
});
afterAll(async () => {
  await nc?.close();
  for (const i of running) await i.stop();
  await Promise.all([srv?.cleanup(), emb?.close(), chat?.close()]);
});

/** An instance answering chats through the fake chat server, with the given embeddings settings (none: off). */
async function start(embeddings?: ConfigInput["embeddings"]): Promise<TestInstance> {
  const inst = await startInstance(srv.url, {
    limits: { user_writes_per_minute: 0, channel_writes_per_minute: 0 } as never,
    providers: { chain: ["fake"], defs: { fake: { base_url: chat.url, model: "chat-1" } } } as never,
    ...(embeddings ? { embeddings } : {}),
  });
  running.add(inst);
  return inst;
}

/** Stops an instance once its background work (the backfill among it) is done. */
async function stop(inst: TestInstance): Promise<void> {
  running.delete(inst);
  await inst.stop();
}

const call = (name: EndpointName, body: unknown) => request(nc, endpointSubject("rosey", name), body);

async function addFixture(channel: string): Promise<void> {
  for (const m of fixture.memories) expect((await call("memory_add", { channel, content: m.content })).body.success).toBe(true);
}

async function recall(channel: string, query: string): Promise<string[]> {
  const r = await call("memory_recall", { channel, query, limit: 5 });
  expect(r.body.success).toBe(true);
  return r.body.memories;
}

/** The stored value of every memory of the channel, as JSON, read straight from the bucket. */
async function stored(channel: string): Promise<Array<Record<string, any>>> {
  const kv = natsKv(await nc.jetstream().views.kv(BUCKETS.memory), BUCKETS.memory, await nc.jetstreamManager());
  const out: Array<Record<string, any>> = [];
  for (const k of await kv.keys(`m.${encodeName(channel)}.*`)) {
    const e = await kv.get(k);
    if (e) out.push(JSON.parse(new TextDecoder().decode(e.value)));
  }
  return out;
}

describe("with an embeddings server", () => {
  const channel = "#meaning";
  let inst: TestInstance;
  beforeAll(async () => {
    inst = await start({ model: MODEL, base_url: emb.url });
    await addFixture(channel);
  });

  it("stores each memory with its vector in the memory bucket", async () => {
    const values = await stored(channel);
    expect(values).toHaveLength(fixture.memories.length);
    for (const v of values) {
      const e = decodeEmbedding(v.embedding);
      expect(e?.model).toBe(MODEL);
      expect(e?.vector.length).toBe(DIMENSIONS);
    }
  });

  it("finds a memory asked about in other words that words alone rank lower", async () => {
    expect((await recall(channel, KIDS_QUESTION))[0]).toBe(KIDS);
    expect((await recall(channel, "what kind of films does bob enjoy?"))[0]).toBe("Bob loves old horror movies");
    expect((await recall(channel, "which town did carol relocate to?"))[0]).toBe("Carol moved to Berlin recently");
  });

  it("gives a chat the facts found by meaning", async () => {
    const before = chat.chats().length;
    const r = await call("chat", { channel, user: "zoe", message: "is erin pregnant?" });
    expect(r.body).toMatchObject({ success: true });
    const sent = chat.chats().slice(before)[0].body.messages;
    expect(storedData(sent)?.facts.map((f) => f.text)).toContain("Erin is expecting a baby in March");
  });

  it("keeps vectors out of replies and events", async () => {
    // The add's and the recall's memory events (the subscription ends after them, or gives up).
    const events = nc.subscribe("rosey.event.llm.memory", { max: 2, timeout: 10_000 });
    const seen = (async () => {
      const out: string[] = [];
      for await (const m of events) out.push(m.string());
      return out;
    })();
    const added = await call("memory_add", { channel: "#events", content: "Bob collects stamps" });
    const found = await call("memory_recall", { channel: "#events", query: "what does bob collect?", limit: 5 });
    const published = await seen;
    expect(published).toHaveLength(2);
    for (const text of [JSON.stringify(added.body), JSON.stringify(found.body), ...published]) expect(text).not.toMatch(/embedding|vector/);
    expect(found.body.memories[0]).toBe("Bob collects stamps");
  });

  it("is loaded with the channel by another instance, which embeds only the question", async () => {
    await stop(inst);
    const other = await start({ model: MODEL, base_url: emb.url });
    const before = emb.inputs().length;
    expect((await recall(channel, KIDS_QUESTION))[0]).toBe(KIDS);
    expect(emb.inputs().slice(before)).toEqual([KIDS_QUESTION]);
    await stop(other);
  });
});

describe("when embeddings fail, recall is by words and the request succeeds", () => {
  const channel = "#meaning"; // its memories have vectors: each recall tries to embed the question

  // After the first failure the server is left alone for the cooldown: the add and the chat
  // below do not wait for it again.
  it.each([
    ["down", 0, async () => ({ model: MODEL, base_url: await refusedUrl() })],
    ["answering 500", 1, async () => (emb.setDefault({ kind: "error", status: 500 }), { model: MODEL, base_url: emb.url })],
    ["too slow", 1, async () => (emb.setDefault({ kind: "hang" }), { model: MODEL, base_url: emb.url, query_timeout_ms: 200, timeout_ms: 200 })],
  ])("server %s", async (_, asked, settings) => {
    const inst = await start(await settings());
    const before = emb.requests.length;
    try {
      const found = await recall(channel, KIDS_QUESTION);
      // By words: the paraphrase's answer is found, but not first.
      expect(found).toContain(KIDS);
      expect(found[0]).not.toBe(KIDS);
      const r = await call("memory_add", { channel: "#failing", content: "Frank hates mushrooms" });
      expect(r.body.success).toBe(true);
      expect((await stored("#failing")).find((v) => v.content === "Frank hates mushrooms")?.embedding).toBeUndefined();
      const chatted = await call("chat", { channel, user: "zoe", message: "is erin pregnant?" });
      expect(chatted.body.success).toBe(true);
      expect(emb.requests.length - before).toBe(asked);
      // Status tells the operator, without the upstream text.
      const status = (await call("status", {})).body;
      expect(status.healthy).toBe(true); // the chat provider is fine
      expect(status.embeddings).toMatchObject({ name: "embeddings", model: MODEL, healthy: false, consecutive_failures: 1 });
      expect(status.embeddings.last_error).toMatch(/^embeddings: /);
      expect(Date.parse(status.embeddings.cooldown_until)).toBeGreaterThan(Date.now());
    } finally {
      emb.setDefault({ kind: "ok" });
      await stop(inst);
    }
  });
});

describe("backfill", () => {
  const channel = "#older";

  it("embeds memories stored while embeddings were off, in the background, and recall then uses them", async () => {
    const off = await start();
    await addFixture(channel);
    await stop(off);
    expect((await stored(channel)).some((v) => v.embedding)).toBe(false);

    const on = await start({ model: MODEL, base_url: emb.url });
    // No vectors yet: this recall is by words, and starts the backfill.
    expect((await recall(channel, KIDS_QUESTION))[0]).not.toBe(KIDS);
    // A few per use: a use each second until every memory has its vector.
    for (let i = 0; i < 10 && (await stored(channel)).some((v) => !v.embedding); i++) {
      await new Promise((r) => setTimeout(r, 1_100));
      await recall(channel, "anything at all");
    }
    await stop(on); // waits for the backfill in flight
    expect((await stored(channel)).every((v) => decodeEmbedding(v.embedding)?.model === MODEL)).toBe(true);

    await start({ model: MODEL, base_url: emb.url });
    expect((await recall(channel, KIDS_QUESTION))[0]).toBe(KIDS);
    expect((await call("status", {})).body.embeddings).toEqual({ name: "embeddings", model: MODEL, healthy: true, consecutive_failures: 0 });
  });

  it("are absent from status when off", async () => {
    for (const i of [...running]) await stop(i); // status is answered by one instance: this one
    const off = await start();
    expect((await call("status", {})).body).not.toHaveProperty("embeddings");
    await stop(off);
  });
});
