// Fuzzing every endpoint through NATS with generated requests: random JSON shapes and
// sizes, unicode (lone surrogates, invalid UTF-8), deep nesting, extreme numbers, huge
// arrays, prototype keys, and valid requests with one field mutated. Every request gets a
// contract answer with matching headers, the process stays up, and a batch of rejected
// requests leaves every KV bucket exactly as it was.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import type { NatsConnection } from "nats";
import { STATUS } from "../lib/errors";
import { ENDPOINTS, endpointSubject, type EndpointName } from "../lib/subjects";
import type { RuntimeLimiter } from "../lib/limiter";
import { natsKv } from "../runtime/kv";
import { BUCKETS } from "../runtime/provision";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

const NAMES = Object.keys(ENDPOINTS) as EndpointName[];
const MAX = 64 * 1024;
const enc = new TextEncoder();

/** A valid request per endpoint, the seed that mutations start from. */
const VALID: Record<EndpointName, Record<string, unknown>> = {
  chat: { channel: "#fuzz", user: "fuzzer", message: "hello" },
  complete: { messages: [{ role: "user", content: "hi" }], temperature: 0.5 },
  summarize: { text: "Some text to summarize.", max_length: 20, style: "bullets" },
  memory_add: { channel: "#fuzz", content: "a fact", category: "fact", importance: 3 },
  memory_recall: { channel: "#fuzz", query: "fact", limit: 5 },
  memory_forget: { channel: "#fuzz", user_id: "nobody" },
  context_reset: { channel: "#fuzz-empty" },
  persona_get: { channel: "#fuzz" },
  persona_set: { channel: "#fuzz", persona: "concise" },
  persona_list: {},
  status: {},
  usage: { user: "fuzzer" },
  persona_define: { name: "fuzzed", system_prompt: "Be brief.", owner: "fuzzer" },
  persona_delete: { name: "never-defined" },
};

const nasty = fc.constantFrom(
  1e308, -1e308, -0, 5e-324, Number.MAX_SAFE_INTEGER + 2, 0.1 + 0.2, -1, 2 ** 53, 1.5,
  "NaN", "Infinity", "-0", "1e308", "", " ", "\u0000", "\ud800", "\udfff", "😀".repeat(300), "a".repeat(5000),
  "__proto__", "constructor", ">", "*", "a.b", null, true, false, [], {}, [[[]]],
  { __proto__: null }, { toString: 1 }, { constructor: { prototype: { polluted: true } } },
);

/** Any JSON value, biased toward the awkward ones. */
const value: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 2, arbitrary: nasty },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 200 }) },
);

/** Raw request bodies that are not a plain JSON encoding of a value. */
const rawBody = fc.oneof(
  fc.constantFrom(
    "", "{", "}", "[", "nul", "NaN", "{\"a\":1,}", "{\"__proto__\":{\"polluted\":1}}",
    "{\"constructor\":{\"prototype\":{\"x\":1}}}", "\"\\ud800\"", "{\"channel\":\"\\ud800\"}", "1e999999", "-0",
  ),
  fc.nat({ max: 5000 }).map((d) => "[".repeat(d) + "]".repeat(d)),
  fc.nat({ max: 3000 }).map((d) => '{"a":'.repeat(d) + "1" + "}".repeat(d)),
  fc.uint8Array({ maxLength: 300 }),
  fc.nat({ max: 20_000 }).map((n) => `[${Array(n).fill("0").join(",")}]`),
  fc.constant(`{"channel":"#c","pad":"${"x".repeat(MAX + 1)}"}`),
);

/** A valid request of `name` with one field replaced, removed or added. */
const mutated = (name: EndpointName) =>
  fc.oneof(
    fc.tuple(fc.constantFrom(...(Object.keys(VALID[name]).length ? Object.keys(VALID[name]) : ["x"])), value).map(([k, v]) => ({ ...VALID[name], [k]: v })),
    fc.constantFrom(...(Object.keys(VALID[name]).length ? Object.keys(VALID[name]) : ["x"])).map((k) => {
      const o = { ...VALID[name] };
      delete o[k];
      return o;
    }),
    fc.tuple(fc.string({ maxLength: 20 }), value).map(([k, v]) => JSON.parse(JSON.stringify({ ...VALID[name], [k || "_"]: v }))),
  );

/** Any request body for `name`, as bytes. */
const body = (name: EndpointName): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    { weight: 3, arbitrary: mutated(name).map((o) => enc.encode(JSON.stringify(o))) },
    { weight: 2, arbitrary: value.map((v) => enc.encode(JSON.stringify(v) ?? "null")) },
    { weight: 2, arbitrary: rawBody.map((r) => (typeof r === "string" ? enc.encode(r) : r)) },
  );

let srv: TestServer;
let svc: TestInstance;
let nc: NatsConnection;
const subj = (n: EndpointName) => endpointSubject("rosey", n);

beforeAll(async () => {
  srv = await startTestServer();
  svc = await startInstance(srv.url, { service: { max_request_bytes: MAX } as never });
  await svc.nc.flush();
  nc = await client(srv.url);
});

afterAll(async () => {
  await nc?.close();
  await svc?.stop();
  await srv?.cleanup();
});

/** Checks one reply against the contract: success, or an error code with its matching header. */
function expectContractReply(r: { body: any; code?: string; description?: string }): void {
  expect(r.body, "a JSON object body").toBeTypeOf("object");
  expect(typeof r.body.success).toBe("boolean");
  if (r.body.success === false) {
    expect(Object.keys(STATUS)).toContain(r.body.error_code);
    expect(r.code).toBe(String(STATUS[r.body.error_code as keyof typeof STATUS]));
    expect(typeof r.body.error).toBe("string");
    expect(r.description).toBeTruthy();
    // Unknown failures must not leak internals.
    expect(r.body.error_code).not.toBe("internal");
  } else {
    expect(r.code).toBeUndefined();
  }
}

describe("fuzzing every endpoint", () => {
  it.each(NAMES)("%s answers every generated request with a contract reply", async (name) => {
    await fc.assert(
      fc.asyncProperty(body(name), async (data) => {
        expectContractReply(await request(nc, subj(name), data));
      }),
      { numRuns: 150 },
    );
  });

  it("the instance is alive and Object.prototype is untouched afterwards", async () => {
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    const r = await request(nc, subj("status"), {});
    expect(r.body).toMatchObject({ success: true, healthy: true });
    const pings = [];
    for await (const p of await nc.services.client({ maxWait: 500 } as never).ping("rosey-llm")) pings.push(p);
    expect(pings.map((p) => p.id)).toEqual([svc.id]);
  });
});

/** Keys and revisions of every bucket: any write, even of the same value, changes a revision. */
async function snapshot(): Promise<Record<string, string[]>> {
  // An idle instance hands its unused global budget back and writes channel usage on timers
  // (lib/limiter), writes no request causes; do both now so they cannot land between snapshots.
  await (svc.ctx.limiter as Partial<RuntimeLimiter>).close?.();
  await svc.ctx.events.flush();
  const js = nc.jetstream();
  const jsm = await nc.jetstreamManager();
  const out: Record<string, string[]> = {};
  for (const bucket of Object.values(BUCKETS)) {
    const kv = natsKv(await js.views.kv(bucket), bucket, jsm);
    const rows: string[] = [];
    for (const k of await kv.keys()) {
      const e = await kv.get(k);
      if (e) rows.push(`${k}@${e.revision}`);
    }
    out[bucket] = rows.sort();
  }
  return out;
}

/** Requests certain to be refused: a valid request plus an unknown field, or a wrong type. */
const rejected = fc.tuple(fc.constantFrom(...NAMES), fc.oneof(
  fc.tuple(fc.string({ minLength: 1, maxLength: 10 }).filter((k) => !["channel", "user", "message", "persona", "messages", "temperature", "max_tokens", "provider", "text", "max_length", "style", "content", "category", "user_id", "importance", "query", "limit", "id", "name", "system_prompt", "description", "__proto__"].includes(k)), value).map(([k, v]) => ({ extra: [k, v] as const })),
  fc.constantFrom<unknown>([], 42, null, "not json", '{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"x":1}}}').map((whole) => ({ whole })),
));

describe("rejected requests change no state", () => {
  it("a batch of refused requests leaves every bucket's keys and revisions as they were", async () => {
    // Some state first, so there is something to disturb.
    await request(nc, subj("memory_add"), { channel: "#state", content: "kept", user_id: "u1" });
    await request(nc, subj("persona_set"), { channel: "#state", persona: "technical" });
    await request(nc, subj("chat"), { channel: "#state", user: "u1", message: "hello" });
    const before = await snapshot();
    expect(before[BUCKETS.personas].length).toBeGreaterThan(0);
    expect(before[BUCKETS.memory].length).toBeGreaterThan(0);

    await fc.assert(
      fc.asyncProperty(rejected, async ([name, how]) => {
        const payload = "whole" in how ? how.whole : { ...VALID[name], [how.extra[0]]: how.extra[1] };
        const r = await request(nc, subj(name), payload);
        expect(r.body.error_code).toBe("validation");
        expect(r.code).toBe("400");
      }),
      { numRuns: 150 },
    );
    expect(await snapshot()).toEqual(before);
  });
});
