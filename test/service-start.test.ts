// Starting over full buckets: the instance reads nothing at start, is discoverable only once
// every endpoint answers, and its first request is answered correctly.
import type { NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeName } from "../lib/keys";
import type { MemoryService } from "../lib/memory";
import type { PersonasService } from "../lib/personas";
import type { Memory } from "../lib/schemas";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

const CHANNELS = 2_000;
const enc = new TextEncoder();
let srv: TestServer;
let nc: NatsConnection;
const instances: TestInstance[] = [];

/** Writes a memory and an exchange into each of `CHANNELS` channels, straight into the bucket. */
async function fillBucket(): Promise<void> {
  const first = await startInstance(srv.url); // provisions the buckets
  await first.stop();
  const kv = await nc.jetstream().views.kv("ROSEY_LLM_MEMORY");
  const at = new Date().toISOString();
  const writes: Array<() => Promise<unknown>> = [];
  for (let c = 0; c < CHANNELS; c++) {
    const ch = encodeName(`#room-${c}`);
    const id = `mem${String(c).padStart(19, "0")}`;
    const memory: Memory = { id, channel: `#room-${c}`, user_id: null, category: "fact", content: `room ${c} has a piano numbered ${c}`, importance: 2, created_at: at, last_accessed: at };
    writes.push(() => kv.put(`m.${ch}.${id}`, enc.encode(JSON.stringify(memory))));
    writes.push(() => kv.put(`t.${ch}.000000001-00000-seed`, enc.encode(JSON.stringify({ user: "ann", message: `hello room ${c}`, reply: "hi", at: 1 }))));
  }
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < writes.length) await writes[next++]();
  }));
}

beforeAll(async () => {
  srv = await startTestServer();
  nc = await client(srv.url);
  await fillBucket();
});

afterAll(async () => {
  await Promise.all(instances.map((i) => i.stop()));
  await nc?.close();
  await srv?.cleanup();
});

describe("a start over a bucket with thousands of channels", () => {
  it("answers PING only when it answers requests, and its first recall is right", async () => {
    const starting = startInstance(srv.url).then((i) => (instances.push(i), i));
    // Ask as a client would: PING until someone answers, then send the request at once.
    let pong = false;
    while (!pong) {
      pong = await nc.request("$SRV.PING.rosey-llm", undefined, { timeout: 50 }).then(() => true, () => false);
    }
    const r = await request(nc, "rosey.llm.memory.recall", { channel: "#room-1234", query: "piano", limit: 3 });
    expect(r.code).toBeUndefined();
    expect(r.body.memories).toEqual(["room 1234 has a piano numbered 1234"]);
    const chat = await request(nc, "rosey.llm.chat", { channel: "#room-77", user: "bob", message: "who said hello?" });
    expect(chat.body.success).toBe(true);
    await starting;
  });

  it("holds nothing at start but the channels it was asked about, and writes no key of its own but the end of the move of old selections", async () => {
    const inst = await startInstance(srv.url);
    instances.push(inst);
    const memory = inst.ctx.memory as MemoryService;
    expect(memory.cached().channels).toBe(0);
    await memory.recall({ channel: "#room-5", query: "piano", limit: 1 });
    expect(memory.cached().channels).toBe(1);
    // Instances came and went: the buckets hold only what requests stored, and the record
    // that no persona selection of an earlier version is left to move (written once).
    expect(await (inst.ctx.personas as PersonasService).move.step()).toBe(true);
    const jsm = await nc.jetstreamManager();
    const subjects = async (stream: string) => Object.keys((await jsm.streams.info(stream, { subjects_filter: ">" })).state.subjects ?? {});
    // History, memories, persona selections and the rate-limit document of the channels used.
    expect((await subjects("KV_ROSEY_LLM_MEMORY")).filter((s) => !/^\$KV\.ROSEY_LLM_MEMORY\.[tmlp]\./.test(s))).toEqual([]);
    expect(await subjects("KV_ROSEY_LLM_PERSONAS")).toEqual(["$KV.ROSEY_LLM_PERSONAS.migrated.sel"]);
  });
});
