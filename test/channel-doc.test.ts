// A channel's rate-limit document kept among the channel's memory keys (lib/memory/limits-doc.ts)
// on a real nats-server, with two service instances: the chat whose admission proves the
// channel's memory current still sees what the other instance wrote just before, a document
// earlier versions left in the limits bucket moves with its window, and the channel's hourly
// limit stays exact across instances.
import type { NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeName } from "../lib/keys";
import { CONTENDED_MS } from "../lib/kv";
import type { ChannelDoc } from "../lib/limiter";
import { BUCKETS } from "../runtime/provision";
import { startTestServer, type TestServer } from "./helpers/nats";
import { fakeProviders, startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";
import * as chat from "../handlers/chat";
import * as memoryAdd from "../handlers/memory_add";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

const dec = new TextDecoder();
const enc = new TextEncoder();

let srv: TestServer;
let fake: FakeOpenAI;
let a: TestInstance;
let b: TestInstance;
let nc: NatsConnection;

const config = (channelPerHour: number) => ({
  limits: { user_per_minute: 1_000, user_per_hour: 10_000, channel_per_hour: channelPerHour } as never,
  providers: fakeProviders(fake.url, { api_key: "sk-test", timeout_ms: 5_000 }, { alone: true }) as never,
});

beforeAll(async () => {
  srv = await startTestServer();
  fake = await startOpenAIServer();
  nc = await client(srv.url);
});
afterAll(async () => {
  await nc?.close();
  await a?.stop();
  await b?.stop();
  await fake?.close();
  await srv?.cleanup();
});

describe("a channel's document among its memory keys", () => {
  it("moves a document an earlier version left in the limits bucket, with its hour", async () => {
    a = await startInstance(srv.url, config(5));
    const js = nc.jetstream();
    const limits = await js.views.kv(BUCKETS.limits);
    const memory = await js.views.kv(BUCKETS.memory);
    const channel = "#old-room";
    // Four admissions in the last hour, as an earlier version stored them.
    const now = Date.now();
    await limits.put(`c.${encodeName(channel)}`, enc.encode(JSON.stringify({ l: [now - 4_000, now - 3_000, now - 2_000, now - 1_000] })));
    const first = await request(nc, "rosey.llm.chat", { channel, user: "ann", message: "one more" });
    console.log("FIRST", JSON.stringify(first));
    expect(first.body).toMatchObject({ success: true });
    const refused = await request(nc, "rosey.llm.chat", { channel, user: "ann", message: "and another" });
    expect(refused.code).toBe("429");
    expect(refused.body.error).toMatch(/channel-per-hour/);
    const moved = await memory.get(`l.${encodeName(channel)}.doc`);
    expect((JSON.parse(dec.decode(moved!.value)) as ChannelDoc).l).toHaveLength(5);
    // The old copy goes once the move is stored.
    for (let i = 0; i < 50 && (await limits.get(`c.${encodeName(channel)}`))?.operation === "PUT"; i++) await new Promise((r) => setTimeout(r, 20));
    const left = await limits.get(`c.${encodeName(channel)}`);
    expect(left === null || left.operation !== "PUT").toBe(true);
    await a.stop();
  });

  it("a chat whose admission would prove the channel still sees what the other instance stored just before", async () => {
    // The instances' clock moves on at will: a channel another instance wrote proves nothing
    // for CONTENDED_MS. (One clock for both: history ids are times.)
    let skew = 0;
    const clock = { now: () => Date.now() + skew };
    a = await startInstance(srv.url, config(1_000), { clock });
    b = await startInstance(srv.url, config(1_000), { clock });
    // Each instance's handlers called on its own context: requests through NATS would reach
    // either instance (one queue group), and this test needs to choose.
    const on = (inst: TestInstance) => ({
      chat: (user: string, message: string) => chat.handle(chat.request.parse({ channel, user, message }), inst.ctx),
      add: (content: string) => memoryAdd.handle(memoryAdd.request.parse({ channel, content }), inst.ctx),
    });
    const channel = "#shared";
    for (let round = 0; round < 4; round++) {
      // The reader serves the channel alone for a while: it holds it and can prove it.
      // (The first chat's admission does not prove it, but the read after it learns where the
      // channel stands: the second's does.)
      skew += CONTENDED_MS;
      for (let i = 0; i < 2; i++) await on(a).chat("ann", `round ${round}, chat ${i}`);
      // First rounds: the other instance only stores a memory (the channel's rate-limit document
      // is unchanged, so only the condition on the whole channel notices); then it also chats.
      const chats = round >= 2;
      await on(b).add(`the password of round ${round} is swordfish-${round}`);
      if (chats) await on(b).chat("bob", `note ${round} from the other instance`);
      await on(a).chat("ann", `what is the password of round ${round}?`);
      const sent = JSON.stringify(fake.chats().at(-1)!.body.messages);
      expect(sent).toContain(`swordfish-${round}`);
      if (chats) expect(sent).toContain(`note ${round} from the other instance`);
      expect(a.ctx.memory.quiet(channel)).toBe(false);
    }
  });
});
