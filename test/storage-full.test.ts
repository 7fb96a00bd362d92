// A service over buckets and a stream with tiny limits on a real nats-server: a full memory
// bucket refuses new memories with storage_full (naming the setting to raise, in the reply
// and the log) while every other endpoint keeps answering and forgetting frees space; a
// full events stream drops its oldest events and never fails a request.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JetStreamManager, NatsConnection } from "nats";
import { defaultConfig } from "../lib/config";
import { encodeName } from "../lib/keys";
import { createLogger } from "../lib/log";
import { BUCKETS, EVENTS_STREAM } from "../runtime/provision";
import { startService, type RunningService } from "../runtime/service";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request } from "./helpers/service";

let srv: TestServer;
let inst: RunningService;
let nc: NatsConnection;
let jsm: JetStreamManager;
const lines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  srv = await startTestServer();
  inst = await startService({
    config: defaultConfig({
      storage: { memory_max_bytes: 16 * 1024 } as never,
      events: { max_bytes: 8 * 1024 } as never,
      // Filling the bucket takes more writes a minute than the write limits allow.
      limits: { user_writes_per_minute: 0, channel_writes_per_minute: 0 } as never,
    }),
    servers: [srv.url],
    log: createLogger("info", {}, (l) => lines.push(JSON.parse(l))),
  });
  nc = await client(srv.url);
  jsm = await nc.jetstreamManager();
});
afterAll(async () => {
  await nc?.close();
  await inst?.stop();
  await srv?.cleanup();
});

const add = (i: number) =>
  request(nc, "rosey.llm.memory.add", { channel: `#full${i % 3}`, user_id: `u${i % 3}`, content: `fact number ${i}: ${"x".repeat(200)}` });

describe("a full memory bucket", () => {
  let stored = 0;
  let refused: Awaited<ReturnType<typeof add>>;

  beforeAll(async () => {
    // A channel chatted in before the bucket filled up: its rate-limit document is stored.
    expect((await request(nc, "rosey.llm.chat", { channel: "#known", user: "early", message: "hi" })).body.success).toBe(true);
    for (let i = 0; i < 200; i++) {
      const r = await add(i);
      if (!r.body.success) {
        refused = r;
        break;
      }
      stored++;
    }
  });

  it("refuses a new memory with storage_full, naming the bucket and the setting", () => {
    expect(stored).toBeGreaterThan(5);
    expect(refused.body).toMatchObject({ success: false, error_code: "storage_full", count: 0 });
    expect(refused.body.error).toMatch(/ROSEY_LLM_MEMORY reached its size limit set by ROSEY_MEMORY_MAX_BYTES \(storage.memory_max_bytes\)/);
    expect(refused.code).toBe("507");
    const logged = lines.find((l) => l.error_code === "storage_full");
    expect(logged).toMatchObject({ level: "error", endpoint: "memory_add" });
    expect(String(logged!.error)).toMatch(/ROSEY_MEMORY_MAX_BYTES/);
  });

  it("keeps answering everything that does not need new memory keys", async () => {
    expect((await request(nc, "rosey.llm.status", {})).body.success).toBe(true);
    expect((await request(nc, "rosey.llm.persona.list", {})).body.success).toBe(true);
    expect((await request(nc, "rosey.llm.usage", {})).body.success).toBe(true);
    const recall = await request(nc, "rosey.llm.memory.recall", { channel: "#full0", user_id: "u0", query: "fact number" });
    expect(recall.body).toMatchObject({ success: true });
    expect(recall.body.count).toBeGreaterThan(0);
    const complete = await request(nc, "rosey.llm.complete", { messages: [{ role: "user", content: "still there?" }] });
    expect(complete.body.success).toBe(true);
  });

  it("a chat is answered storage_full, leaves no exchange, and counts whatever the model spent", async () => {
    // Model calls, counted on the instance's own providers.
    let calls = 0;
    const providers = inst.ctx.providers;
    const complete = providers.complete.bind(providers);
    providers.complete = (...a) => (calls++, complete(...a));
    try {
      // A channel chatted in before the bucket filled up, and a new one. Each may be refused
      // at its admission (the channel's rate-limit document cannot be stored: nothing spent) or
      // at its exchange (the model was called: its tokens count).
      for (const [channel, user] of [["#known", "fuller"], ["#full-chat", "newcomer"]]) {
        const before = calls;
        const r = await request(nc, "rosey.llm.chat", { channel, user, message: "hello ".repeat(400) });
        expect(r.body).toMatchObject({ success: false, error_code: "storage_full" });
        expect((await request(nc, "rosey.llm.usage", { user })).body.requests_today).toBe(calls - before);
      }
      const exchanges = async (channel: string) =>
        Object.keys((await jsm.streams.info(`KV_${BUCKETS.memory}`, { subjects_filter: `$KV.${BUCKETS.memory}.t.${encodeName(channel)}.>` })).state.subjects ?? {});
      expect(await exchanges("#known")).toHaveLength(1);
      expect(await exchanges("#full-chat")).toEqual([]);
    } finally {
      providers.complete = complete;
    }
  });

  it("forgetting frees space for new memories", async () => {
    const forgot = await request(nc, "rosey.llm.admin.memory.forget", { channel: "#full1", user_id: "u1" });
    expect(forgot.body.success).toBe(true);
    expect(forgot.body.count).toBeGreaterThan(0);
    const again = await add(1_000);
    expect(again.body).toMatchObject({ success: true, count: 1 });
  });
});

describe("a full events stream", () => {
  it("drops its oldest events: requests keep succeeding and the newest event is kept", async () => {
    for (let i = 0; i < 40; i++) {
      const r = await request(nc, "rosey.llm.complete", { messages: [{ role: "user", content: `event filler ${i} ${"y".repeat(100)}` }] });
      expect(r.body.success).toBe(true);
    }
    await inst.ctx.events.flush();
    const info = await jsm.streams.info(EVENTS_STREAM);
    expect(info.state.bytes).toBeLessThanOrEqual(8 * 1024);
    expect(info.state.first_seq).toBeGreaterThan(1);
    const last = await jsm.streams.getMessage(EVENTS_STREAM, { last_by_subj: "rosey.event.llm.response" });
    expect(last.json<{ prompt_length: number }>().prompt_length).toBe("event filler 39 ".length + 100);
  });
});

describe("history keys", () => {
  it("carry the history TTL", async () => {
    // The bucket is full: free some room for the exchange first.
    await request(nc, "rosey.llm.admin.memory.forget", { channel: "#full0", user_id: "u0" });
    const r = await request(nc, "rosey.llm.chat", { channel: "#ttl", user: "t", message: "remember this exchange" });
    expect(r.body.success).toBe(true);
    const subject = `$KV.${BUCKETS.memory}.t.${encodeName("#ttl")}.>`;
    const msg = await jsm.streams.getMessage(`KV_${BUCKETS.memory}`, { last_by_subj: subject });
    expect(msg.header.get("Nats-TTL")).toBe(`${30 * 86_400}s`);
  });
});
