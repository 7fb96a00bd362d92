// Streamed replies over NATS, end to end: a real nats-server, one instance with the chain
// openai → offline (openai pointing at the local fake server), callers as plugins write
// them — plain nats.js (an inbox subscription and a publish with it as reply subject) and
// the typed client. Chunks add up to the final reply; a caller that does not ask gets the
// reply alone; failures before the first chunk fall back, after it end with the error
// reply; a caller that stops listening cancels the provider call and its reservation; and
// limits, usage, history and events are those of the same call unstreamed.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { connect, createInbox, type Msg, type NatsConnection } from "nats";
import { z } from "zod";
import { createClient, type RoseyLlmClient, type StreamPart } from "../lib/client";
import { ChatResponse, STREAM_HEADER, StreamChunk } from "../lib/schemas";
import { jsonSchema } from "../lib/schemas/json";
import { createEndpoint } from "../runtime/endpoint";
import { replayEvents } from "../runtime/replay";
import { createStreams } from "../runtime/stream";
import { startTestServer, type TestServer } from "./helpers/nats";
import { fakeProviders, startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";
import { usersBlock } from "./helpers/auth";
import { createTestContext } from "./helpers/context";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

const CONTENT = "Ahoy, the tide turns at noon and the fish are biting.";
const QUOTA = 100_000;

let srv: TestServer;
let fake: FakeOpenAI;
let inst: TestInstance;
let nc: NatsConnection;
let llm: RoseyLlmClient;

beforeAll(async () => {
  [srv, fake] = await Promise.all([startTestServer(), startOpenAIServer()]);
  inst = await startInstance(srv.url, {
    providers: fakeProviders(fake.url, { api_key: "sk-stream-e2e-0123456789", timeout_ms: 20_000 }, { failure_threshold: 50, cooldown_ms: 1_000, deadline_ms: 20_000 }),
    limits: { user_per_minute: 1_000, user_per_hour: 10_000, user_per_day: 10_000, user_tokens_per_day: QUOTA },
  } as never);
  nc = await client(srv.url);
  llm = createClient(nc, { timeoutMs: 10_000 });
});

afterAll(async () => {
  await nc?.close();
  await inst?.stop();
  await Promise.all([srv?.cleanup(), fake?.close()]);
});

beforeEach(() => fake.setDefault({ kind: "reply", content: CONTENT }));

const enc = new TextEncoder();
const isChunk = (m: Msg) => m.headers?.get(STREAM_HEADER.name) === STREAM_HEADER.chunk;

/** Sends a request the plain nats.js way and returns every message up to the first without the chunk header. */
async function rawStream(subject: string, body: object): Promise<Msg[]> {
  const inbox = createInbox();
  const sub = nc.subscribe(inbox);
  nc.publish(subject, enc.encode(JSON.stringify(body)), { reply: inbox });
  const got: Msg[] = [];
  const timer = setTimeout(() => sub.unsubscribe(), 10_000);
  for await (const m of sub) {
    got.push(m);
    if (!isChunk(m)) break;
  }
  clearTimeout(timer);
  sub.unsubscribe();
  return got;
}

/** Every part of a typed-client stream, run to its end. */
async function parts<P>(it: AsyncIterable<P>): Promise<P[]> {
  const out: P[] = [];
  for await (const p of it) out.push(p);
  return out;
}

const chunksOf = <P>(ps: P[]) => ps.filter((p): p is P & StreamChunk => typeof p === "object" && p !== null && "delta" in p);

/** Polls `read` until `done` holds of its value (at most ~5 s), returning the last value. */
async function until<T>(read: () => Promise<T> | T, done: (v: T) => boolean): Promise<T> {
  let v = await read();
  for (let i = 0; i < 250 && !done(v); i++) {
    await new Promise((r) => setTimeout(r, 20));
    v = await read();
  }
  return v;
}

describe("a streamed chat over plain nats.js", () => {
  it("sends chunks with the header, in order, adding up to the final reply, which has no header", async () => {
    const msgs = await rawStream("rosey.llm.chat", { channel: "#raw", user: "ann", message: "when is the tide?", stream: true });
    const chunks = msgs.slice(0, -1).map((m) => StreamChunk.parse(m.json()));
    const last = msgs.at(-1)!;
    expect(chunks.length).toBeGreaterThan(5);
    expect(chunks.map((c) => c.index)).toEqual(chunks.map((_, i) => i));
    expect(isChunk(last)).toBe(false);
    expect(last.headers?.get("Nats-Service-Error-Code") ?? "").toBe("");
    expect(last.json()).toMatchObject({ success: true, content: CONTENT, provider: "openai", model: "test-model", tokens_used: 17 });
    expect(chunks.map((c) => c.delta).join("")).toBe(CONTENT);
    expect(fake.chats().at(-1)!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
  });

  it("sends a caller who did not ask for a stream the reply alone, and asks the provider for none", async () => {
    const msgs = await rawStream("rosey.llm.chat", { channel: "#raw", user: "ann", message: "and tomorrow?" });
    expect(msgs).toHaveLength(1);
    expect(msgs[0].json()).toMatchObject({ success: true, content: CONTENT });
    expect(fake.chats().at(-1)!.body.stream).toBeUndefined();
    // The one-reply request every existing caller makes is unchanged.
    expect((await request(nc, "rosey.llm.chat", { channel: "#raw", user: "ann", message: "thanks" })).body).toMatchObject({ success: true, content: CONTENT });
  });

  it("lets a caller that reads past the chunks get the same final reply", async () => {
    const msgs = await rawStream("rosey.llm.complete", { messages: [{ role: "user", content: "hi" }], stream: true });
    const final = msgs.filter((m) => !isChunk(m));
    expect(final).toHaveLength(1);
    expect(final[0].json()).toMatchObject({ success: true, content: CONTENT });
  });

  it("publishes the chunk's JSON Schema in the endpoint metadata of chat and complete only", async () => {
    const m = await nc.request("$SRV.INFO.rosey-llm", new Uint8Array(), { timeout: 2_000 });
    const info = m.json<{ endpoints: Array<{ name: string; metadata: Record<string, string> }> }>();
    const withChunks = info.endpoints.filter((e) => e.metadata.chunk_schema).map((e) => e.name);
    expect(withChunks.sort()).toEqual(["chat", "complete"]);
    for (const e of info.endpoints.filter((x) => x.metadata.chunk_schema)) expect(JSON.parse(e.metadata.chunk_schema)).toEqual(jsonSchema(StreamChunk, "output"));
  });
});

describe("a streamed call through the typed client", () => {
  it("yields the chunks, then the result complete() gives", async () => {
    const got = await parts(llm.completeStream({ messages: [{ role: "user", content: "sing" }], user: "bo" }));
    const last = got.at(-1) as StreamPart<"complete">;
    expect(last).toMatchObject({ success: true, content: CONTENT, provider: "openai" });
    expect(chunksOf(got).map((c) => c.delta).join("")).toBe(CONTENT);
  });

  it("refuses an invalid request locally, without sending it", async () => {
    const before = fake.chats().length;
    const got = await parts(llm.chatStream({ channel: "#c", user: "bo", message: "" }));
    expect(got).toEqual([expect.objectContaining({ success: false, error_code: "validation", local: true })]);
    expect(fake.chats()).toHaveLength(before);
  });

  it("says no_responders when no instance serves the prefix", async () => {
    const other = createClient(nc, { prefix: "nobody" });
    expect(await parts(other.chatStream({ channel: "#c", user: "bo", message: "hi" }))).toEqual([
      expect.objectContaining({ success: false, transport: true, error_code: "no_responders" }),
    ]);
  });

  it("says disconnected on a closed connection, without throwing", async () => {
    const closed = await client(srv.url);
    await closed.close();
    expect(await parts(createClient(closed).chatStream({ channel: "#c", user: "bo", message: "hi" }))).toEqual([
      expect.objectContaining({ success: false, transport: true, error_code: "disconnected" }),
    ]);
  });

  it("says forbidden when the connection may not publish to the endpoint", async () => {
    const locked = await startTestServer({ config: usersBlock([{ user: "ro", password: "ro-pass", permissions: { publish: { allow: ["nothing.>"] } } }]) });
    const ro = await connect({ servers: locked.url, user: "ro", pass: "ro-pass" });
    try {
      expect(await parts(createClient(ro).chatStream({ channel: "#c", user: "bo", message: "hi" }, { timeoutMs: 5_000 }))).toEqual([
        expect.objectContaining({ success: false, transport: true, error_code: "forbidden" }),
      ]);
    } finally {
      await ro.close();
      await locked.cleanup();
    }
  });

  it("times out when nothing answers in time", async () => {
    const silent = nc.subscribe("quiet.llm.chat");
    const got = await parts(createClient(nc, { prefix: "quiet" }).chatStream({ channel: "#c", user: "bo", message: "hi" }, { timeoutMs: 200 }));
    silent.unsubscribe();
    expect(got).toEqual([expect.objectContaining({ success: false, transport: true, error_code: "timeout" })]);
  });
});

describe("failures", () => {
  it("falls back to the next provider when the first fails before its first chunk; offline streams word by word", async () => {
    fake.script({ kind: "error", status: 500 });
    const got = await parts(llm.chatStream({ channel: "#fb", user: "cy", message: "is anyone there" }));
    const last = got.at(-1) as StreamPart<"chat">;
    expect(last).toMatchObject({ success: true, provider: "offline", content: "[offline] cy: is anyone there" });
    expect(chunksOf(got).map((c) => c.delta)).toEqual(["[offline]", " cy:", " is", " anyone", " there"]);
  });

  it("ends a stream that fails after its first chunk with the error reply and headers, without switching provider", async () => {
    fake.script({ kind: "reply", content: CONTENT, cut_after: 3 });
    const msgs = await rawStream("rosey.llm.chat", { channel: "#cut", user: "cy", message: "go on", stream: true });
    const last = msgs.at(-1)!;
    expect(msgs.slice(0, -1).map((m) => StreamChunk.parse(m.json()).delta)).toEqual(["Ahoy,", " the", " tide"]);
    expect(last.headers?.get("Nats-Service-Error-Code")).toBe("503");
    expect(last.headers?.get("Nats-Service-Error")).toMatch(/openai: connection failed while the reply was being sent/);
    expect(last.json()).toMatchObject({ success: false, error_code: "provider_unavailable", tokens_used: 0 });
    // Nothing was recorded: the next turn's prompt has no trace of this one.
    await request(nc, "rosey.llm.chat", { channel: "#cut", user: "cy", message: "again" });
    expect(JSON.stringify(fake.chats().at(-1)!.body.messages)).not.toContain("go on");
  });
});

/** Today's usage of a user through the service. */
const usageOf = async (user: string) => (await llm.usage({ user })) as { requests_today: number; tokens_today: number; rate_limits_remaining: { tokens_today: number; per_minute: number } };

describe("a caller that stops listening", () => {
  it("makes the service close the provider's connection and return the reservation, as for any failed call", async () => {
    fake.script({ kind: "reply", deltas: Array.from({ length: 300 }, (_, i) => `word${i} `), interval_ms: 25 });
    const abandoned = fake.abandoned();
    const seen: string[] = [];
    let during = QUOTA;
    for await (const p of llm.chatStream({ channel: "#gone", user: "dee", message: "tell me everything" })) {
      if (!("delta" in p)) throw new Error(`the stream ended: ${JSON.stringify(p)}`);
      seen.push(p.delta);
      if (seen.length === 2) during = (await usageOf("dee")).rate_limits_remaining.tokens_today;
      if (seen.length === 3) break;
    }
    // While the reply was being written its tokens were reserved.
    expect(during).toBeLessThan(QUOTA);
    expect(await until(() => fake.abandoned(), (n) => n > abandoned)).toBe(abandoned + 1);
    const after = await until(() => usageOf("dee"), (u) => u.rate_limits_remaining.tokens_today === QUOTA);
    expect(after).toMatchObject({ requests_today: 0, tokens_today: 0, rate_limits_remaining: { tokens_today: QUOTA } });
    // The cancelled turn is not in the channel's history.
    await request(nc, "rosey.llm.chat", { channel: "#gone", user: "dee", message: "hello again" });
    expect(JSON.stringify(fake.chats().at(-1)!.body.messages)).not.toContain("tell me everything");
  });
});

describe("accounting", () => {
  it("is the same for a streamed chat as for the same chat unstreamed: usage, events, history", async () => {
    // The same user in both channels: the history quotes the speaker's name.
    const runs = [
      { channel: "#acct-plain", user: "eve", stream: false },
      { channel: "#acct-stream", user: "eve", stream: true },
    ];
    for (const usage of [{ prompt_tokens: 40, completion_tokens: 12, total_tokens: 52 }, false as const]) {
      for (const r of runs) {
        fake.script({ kind: "reply", content: CONTENT, usage });
        const body = { channel: r.channel, user: r.user, message: "what about the fish?" };
        if (r.stream) expect((await parts(llm.chatStream(body))).at(-1)).toMatchObject({ success: true, content: CONTENT });
        else expect(await llm.chat(body)).toMatchObject({ success: true, content: CONTENT });
      }
    }
    const [plain, streamed] = await Promise.all(runs.map(async (r) => ({ ...(await llm.usage({ channel: r.channel })), channel: "" })));
    expect(plain).toMatchObject({ requests_today: 2, by_provider: { openai: { requests: 2 } } });
    expect((plain as { tokens_today: number }).tokens_today).toBeGreaterThan(52);
    expect(streamed).toEqual(plain);
    expect(await usageOf("eve")).toMatchObject({ requests_today: 4 });

    // The next turn's prompt carries the same history in both channels.
    for (const r of runs) await llm.chat({ channel: r.channel, user: r.user, message: "one more" });
    const [p, s] = fake.chats().slice(-2).map((c) => JSON.stringify(c.body.messages));
    expect(p).toContain(CONTENT);
    expect(s).toBe(p);

    await inst.ctx.events.flush();
    const events: Array<Record<string, unknown>> = [];
    for await (const e of replayEvents(nc.jetstream(), { prefix: "rosey", type: "response" })) events.push(e.event);
    const of = (channel: string) =>
      events.filter((e) => e.channel === channel).map(({ channel: _c, user: _u, id: _i, timestamp: _t, latency_ms: _l, ...rest }) => rest);
    expect(of("#acct-plain")).toHaveLength(3);
    expect(of("#acct-stream")).toEqual(of("#acct-plain"));
  });
});

describe("a reply stream", () => {
  /** Every message on `inbox` up to a sentinel published after `act` on the same connection (so after all it sent). */
  async function received(inbox: string, act: () => void | Promise<void>): Promise<string[]> {
    const sub = nc.subscribe(inbox);
    await act();
    nc.publish(inbox, "end");
    const out: string[] = [];
    for await (const m of sub) {
      if (m.string() === "end") break;
      out.push(isChunk(m) ? StreamChunk.parse(m.json()).delta : `reply:${m.string()}`);
    }
    return out;
  }

  it("drops empty pieces and every piece after it closed, and lets its reply subject go", async () => {
    const streams = createStreams(nc, "_INBOX_TEST");
    const inbox = createInbox();
    const got = await received(inbox, () => {
      const s = streams.open(inbox);
      expect(streams.size).toBe(1);
      s.send("");
      s.send("a");
      s.send("b");
      s.close();
      s.send("c");
    });
    expect(got).toEqual(["a", "b"]);
    expect(streams.size).toBe(0);
    streams.close();
  });

  it("aborts, as a cancel, when a piece cannot be sent", () => {
    const streams = createStreams(nc, "_INBOX_TEST");
    const s = streams.open(createInbox());
    s.send("x".repeat(nc.info!.max_payload + 1));
    expect(s.signal.aborted).toBe(true);
    expect((s.signal.reason as Error).name).toBe("AbortError");
    s.close();
    streams.close();
  });

  it("ends with the reply: a handler still running past its deadline sends nothing more", async () => {
    const streams = createStreams(nc, "_INBOX_TEST");
    const inbox = createInbox();
    let resume!: () => void;
    let finished!: Promise<void>;
    const ep = createEndpoint(
      {
        name: "chat",
        request: z.strictObject({ stream: z.boolean() }),
        response: ChatResponse,
        handle: async (_req, ctx) => {
          ctx.stream!.send("early");
          finished = new Promise<void>((r) => (resume = r)).then(() => ctx.stream!.send("late"));
          await finished;
          return { success: true };
        },
      },
      (signal, stream) => ({ ...createTestContext(), signal, stream }),
      { maxRequestBytes: 1_000, timeoutMs: 50 },
    );
    const got = await received(inbox, async () => {
      const replied = new Promise<void>((done) =>
        ep.handle({
          data: enc.encode('{"stream":true}'),
          reply: (body) => (nc.publish(inbox, body), done()),
          openStream: () => streams.open(inbox),
        }),
      );
      await replied;
      resume();
      await finished;
    });
    expect(got).toEqual(["early", expect.stringMatching(/^reply:.*"error_code":"internal"/)]);
    expect(streams.size).toBe(0);
    streams.close();
  });
});
