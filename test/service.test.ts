// The runtime over a real nats-server: discovery, every endpoint answering, the bad-input
// matrix, stats that count errors, events in the stream and their replay after a restart.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { EventEnvelope, ResponseEvent } from "../lib/schemas";
import { ENDPOINTS, endpointSubject, type EndpointName } from "../lib/subjects";
import { replayEvents } from "../runtime/replay";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

let srv: TestServer;
let a: TestInstance;
let b: TestInstance;
let nc: NatsConnection;
const subj = (n: EndpointName) => endpointSubject("rosey", n);
const MAX = 4096;

beforeAll(async () => {
  srv = await startTestServer();
  const config = { service: { max_request_bytes: MAX } as never };
  [a, b] = await Promise.all([startInstance(srv.url, config), startInstance(srv.url, config)]);
  nc = await client(srv.url);
});

afterAll(async () => {
  await nc?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  await srv?.cleanup();
});

/** A valid request for every endpoint. */
const VALID: Record<EndpointName, unknown> = {
  chat: { channel: "#general", user: "alice", message: "hello there" },
  complete: { messages: [{ role: "user", content: "Say hi" }] },
  summarize: { text: "The quick brown fox jumps over the lazy dog. ".repeat(10), max_length: 20 },
  memory_add: { channel: "#general", content: "Alice likes tea" },
  memory_recall: { channel: "#general", query: "tea" },
  memory_forget: { channel: "#general", user_id: "nobody" },
  context_reset: { channel: "#empty" },
  persona_get: { channel: "#general" },
  persona_set: { channel: "#other", persona: "concise" },
  persona_list: {},
  status: {},
  usage: { user: "alice" },
  persona_define: { name: "helper", system_prompt: "Be helpful.", owner: "ops" },
  persona_delete: { name: "helper" },
};

describe("discovery", () => {
  it("answers $SRV.PING with both instances of rosey-llm", async () => {
    const pings = [];
    for await (const p of await nc.services.client({ maxWait: 1000 } as never).ping("rosey-llm")) pings.push(p);
    expect(pings).toHaveLength(2);
    expect(new Set(pings.map((p) => p.id))).toEqual(new Set([a.id, b.id]));
    expect(pings[0].version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("documents every endpoint in $SRV.INFO with subject, queue group and JSON Schemas", async () => {
    const infos = [];
    for await (const i of await nc.services.client({ maxWait: 1000 } as never).info("rosey-llm")) infos.push(i);
    expect(infos).toHaveLength(2);
    const eps = infos[0].endpoints;
    expect(eps.map((e) => e.name).sort()).toEqual(Object.keys(ENDPOINTS).sort());
    for (const e of eps) {
      expect(e.subject).toBe(subj(e.name as EndpointName));
      expect(e.queue_group).toBe("rosey-llm");
      const req = JSON.parse(e.metadata!.request_schema);
      const res = JSON.parse(e.metadata!.response_schema);
      expect(req.type ?? req.anyOf).toBeTruthy();
      expect(res.type).toBe("object");
    }
    const chat = JSON.parse(eps.find((e) => e.name === "chat")!.metadata!.request_schema);
    expect(chat.required.sort()).toEqual(["channel", "message", "user"]);
    expect(chat.additionalProperties).toBe(false);
  });

  it("shares requests between the instances through the queue group", async () => {
    await Promise.all(Array.from({ length: 40 }, () => request(nc, subj("persona_list"), {})));
    const served = [a, b].map((i) => i.stats.get("persona_list")!.num_requests);
    expect(served[0] + served[1]).toBeGreaterThanOrEqual(40);
    expect(Math.min(...served)).toBeGreaterThan(0);
  });
});

describe("every endpoint", () => {
  it.each(Object.keys(ENDPOINTS) as EndpointName[])("%s answers a valid request", async (name) => {
    const r = await request(nc, subj(name), VALID[name]);
    expect(r.code, JSON.stringify(r.body)).toBeUndefined();
    expect(r.body.success).toBe(true);
  });

  it("chat answers with the offline provider and tokens counted", async () => {
    const r = await request(nc, subj("chat"), { channel: "#t", user: "bob", message: "what is two plus two" });
    expect(r.body).toMatchObject({ success: true, provider: "offline" });
    expect(r.body.content).toContain("[offline]");
    expect(r.body.tokens_used).toBeGreaterThan(0);
  });
});

/** Requests every endpoint must refuse with a validation error. */
const COMMON_BAD: Array<[string, string | Uint8Array]> = [
  ["non-JSON", "hello"],
  ["an array", "[]"],
  ["a number", "42"],
  ["null", "null"],
  ["a __proto__ key", '{"__proto__":{"polluted":true}}'],
  ["an unknown field", '{"zzz":1}'],
];

/** Endpoint-specific bad requests. */
const SPECIFIC_BAD: Array<[EndpointName, string, unknown]> = [
  ["chat", "missing message", { channel: "#c", user: "u" }],
  ["chat", "empty message", { channel: "#c", user: "u", message: "" }],
  ["chat", "wrong type", { channel: "#c", user: 5, message: "hi" }],
  ["chat", "control characters in a name", { channel: "#c\u0000", user: "u", message: "hi" }],
  ["chat", "a 201-character user name", { channel: "#c", user: "u".repeat(201), message: "hi" }],
  ["chat", "unknown persona name form", { channel: "#c", user: "u", message: "hi", persona: "Not Valid!" }],
  ["complete", "empty messages", { messages: [] }],
  ["complete", "unknown role", { messages: [{ role: "robot", content: "x" }] }],
  ["complete", "temperature out of range", { messages: [{ role: "user", content: "x" }], temperature: 3 }],
  ["complete", "negative max_tokens", { messages: [{ role: "user", content: "x" }], max_tokens: -1 }],
  ["summarize", "unknown style", { text: "abc", style: "haiku" }],
  ["summarize", "max_length too small", { text: "abc", max_length: 0 }],
  ["memory_add", "importance out of range", { channel: "#c", content: "x", importance: 9 }],
  ["memory_add", "unknown category", { channel: "#c", content: "x", category: "gossip" }],
  ["memory_recall", "limit out of range", { channel: "#c", query: "x", limit: 500 }],
  ["memory_forget", "neither id nor user", { channel: "#c" }],
  ["context_reset", "missing channel", {}],
  ["persona_get", "channel wrong type", { channel: ["#c"] }],
  ["persona_set", "missing persona", { channel: "#c" }],
  ["persona_set", "the define form, now an admin subject's", { name: "x", system_prompt: "y" }],
  ["persona_define", "temperature out of range", { name: "x", system_prompt: "y", temperature: -1 }],
  ["persona_delete", "bad name", { name: "Not A Name" }],
  ["persona_list", "a field", { all: true }],
  ["persona_list", "a cursor that is no cursor", { cursor: "abc" }],
  ["status", "user wrong type", { user: 1 }],
  ["usage", "empty user", { user: "" }],
];

describe("bad input", () => {
  const cases: Array<[EndpointName, string, unknown]> = [
    ...(Object.keys(ENDPOINTS) as EndpointName[]).flatMap((n) =>
      COMMON_BAD.map(([what, body]) => [n, what, body] as [EndpointName, string, unknown]),
    ),
    ...SPECIFIC_BAD,
  ];

  it.each(cases)("%s refuses %s with a validation error and headers", async (name, _what, body) => {
    const r = await request(nc, subj(name), body);
    expect(r.body.success).toBe(false);
    expect(r.body.error_code).toBe("validation");
    expect(typeof r.body.error).toBe("string");
    expect(r.code).toBe("400");
    expect(r.description).toBeTruthy();
  });

  it.each(Object.keys(ENDPOINTS) as EndpointName[])("%s refuses an oversized request with payload_too_large", async (name) => {
    const r = await request(nc, subj(name), { channel: "#c", pad: "x".repeat(MAX + 10) });
    expect(r.body.error_code).toBe("payload_too_large");
    expect(r.code).toBe("413");
  });

  it("names the offending field", async () => {
    const r = await request(nc, subj("complete"), { messages: [{ role: "robot", content: "x" }] });
    expect(r.body.error).toMatch(/messages\.0\.role/);
  });

  it("changes nothing: a rejected persona_set leaves the channel's persona alone", async () => {
    await request(nc, subj("persona_set"), { channel: "#stable", persona: "technical" });
    await request(nc, subj("persona_set"), { channel: "#stable", persona: "technical", extra: 1 });
    await request(nc, subj("persona_set"), { channel: "#stable", persona: "Bad Name" });
    const r = await request(nc, subj("persona_get"), { channel: "#stable" });
    expect(r.body.persona.name).toBe("technical");
  });

  it("survives all of it, and $SRV.STATS counts the errors", async () => {
    const r = await request(nc, subj("status"), {});
    expect(r.body.success).toBe(true);
    let errors = 0;
    for await (const s of await nc.services.client({ maxWait: 1000 } as never).stats("rosey-llm")) {
      errors += (s.endpoints ?? []).reduce((n, e) => n + e.num_errors, 0);
      for (const e of s.endpoints ?? []) expect(e.processing_time).toBeGreaterThanOrEqual(0);
    }
    expect(errors).toBeGreaterThanOrEqual(cases.length + 12);
  });
});

describe("events", () => {
  it("publishes a response event with a valid envelope for a chat, replayable after a server restart", async () => {
    const r = await request(nc, subj("chat"), { channel: "#events", user: "erin", message: "remember this event" });
    expect(r.body.success).toBe(true);
    await a.ctx.events.flush();
    await b.ctx.events.flush();

    const find = async () => {
      const seen = [];
      for await (const e of replayEvents(nc.jetstream(), { prefix: "rosey", type: "response" })) seen.push(e.event);
      return seen.filter((e) => e.channel === "#events");
    };
    const before = await find();
    expect(before).toHaveLength(1);
    const env = EventEnvelope.parse(before[0]);
    expect(env.source.service).toBe("rosey-llm");
    expect([a.id, b.id]).toContain(env.source.instance);
    const payload = ResponseEvent.parse(before[0]);
    expect(payload).toMatchObject({ user: "erin", provider: "offline", prompt_length: "remember this event".length });
    expect(payload.tokens_used).toBe(r.body.tokens_used);

    // Restart the server on the same store: the stream is durable.
    await srv.stop();
    const { startNatsServer } = await import("../runtime/nats-server");
    const again = await startNatsServer({ storeDir: srv.storeDir, port: srv.port });
    Object.assign(srv, { process: again.process, pid: again.pid, stop: again.stop });
    await nc.flush().catch(() => {});
    let after: unknown[] = [];
    for (let i = 0; i < 50 && after.length === 0; i++) {
      after = await find().catch(() => []);
      if (after.length === 0) await new Promise((res) => setTimeout(res, 200));
    }
    expect(after).toEqual(before);
  });
});
