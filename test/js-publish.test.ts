// The JetStream publisher of runtime/js-publish.ts against a real nats-server: acknowledgements
// matched to their publishes, and every failure in the shape the callers classify (a CAS
// conflict, no stream, no acknowledgement in time, a closed connection).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { jetstreamPublisher, type JsPublish } from "../runtime/js-publish";
import { isNoResponders } from "../runtime/provision";
import { isWrongLastSequence } from "../runtime/kv";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client } from "./helpers/service";

const enc = new TextEncoder();
let srv: TestServer;
let nc: NatsConnection;
let publish: JsPublish;

beforeAll(async () => {
  srv = await startTestServer();
  nc = await client(srv.url);
  await (await nc.jetstreamManager()).streams.add({ name: "PUB", subjects: ["pub.>"], duplicate_window: 60_000_000_000 });
  publish = jetstreamPublisher(nc, 300);
});
afterAll(async () => {
  await nc?.close();
  await srv?.cleanup();
});

describe("JetStream publisher", () => {
  it("answers each of many concurrent publishes with its own sequence", async () => {
    const acks = await Promise.all(Array.from({ length: 200 }, (_, i) => publish(`pub.k${i % 7}`, enc.encode(String(i)))));
    expect(new Set(acks.map((a) => a.seq)).size).toBe(200);
    const stored = await (await nc.jetstreamManager()).streams.getMessage("PUB", { seq: acks[123].seq });
    expect(new TextDecoder().decode(stored.data)).toBe("123");
  });

  it("stores a retried publish once (same message id) and refuses a stale expected sequence as a conflict", async () => {
    const first = await publish("pub.once", enc.encode("a"), { msgID: "same-id" });
    expect((await publish("pub.once", enc.encode("a"), { msgID: "same-id" })).seq).toBe(first.seq);
    const err = await publish("pub.once", enc.encode("b"), { expect: { lastSubjectSequence: first.seq - 1 } }).catch((e: unknown) => e);
    expect(isWrongLastSequence(err)).toBe(true);
    expect((await publish("pub.once", enc.encode("b"), { expect: { lastSubjectSequence: first.seq } })).seq).toBeGreaterThan(first.seq);
  });

  it("fails with no responders when no stream takes the subject, and with TIMEOUT when nothing answers", async () => {
    expect(isNoResponders(await publish("nostream.x", enc.encode("x")).catch((e: unknown) => e))).toBe(true);
    // A plain subscriber takes the message and never acknowledges it.
    const sub = nc.subscribe("silent.x");
    await nc.flush();
    await expect(publish("silent.x", enc.encode("x"))).rejects.toMatchObject({ code: "TIMEOUT" });
    sub.unsubscribe();
  });

  it("fails what is in flight when its connection closes", async () => {
    const own = await client(srv.url);
    const p = jetstreamPublisher(own, 60_000);
    const sub = own.subscribe("silent.y");
    await own.flush();
    const pending = p("silent.y", enc.encode("y"));
    sub.unsubscribe();
    await own.close();
    await expect(pending).rejects.toMatchObject({ code: "CONNECTION_CLOSED" });
  });
});
