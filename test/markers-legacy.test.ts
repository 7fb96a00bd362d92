// Delete markers written by versions before markers expired (no Nats-TTL) on a real
// nats-server: a channel load replaces its own with expiring ones, which then go; channels
// not loaded keep theirs until then; a key written again since is never deleted.
import type { NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultConfig } from "../lib/config";
import { encodeName } from "../lib/keys";
import { silentLogger } from "../lib/log";
import { markerRetirer } from "../runtime/markers";
import { BUCKETS, provisionBuckets } from "../runtime/provision";
import { client, request, startInstance, type TestInstance } from "./helpers/service";
import { startTestServer, type TestServer } from "./helpers/nats";

const storage = { ...defaultConfig().storage, marker_ttl_seconds: 1 };
const enc = new TextEncoder();

describe("delete markers of older versions", () => {
  let srv: TestServer;
  let nc: NatsConnection;
  let inst: TestInstance;

  beforeAll(async () => {
    srv = await startTestServer();
    nc = await client(srv.url);
    await provisionBuckets(nc.jetstream(), defaultConfig({ storage }));
    inst = await startInstance(srv.url, { storage });
  });
  afterAll(async () => {
    await inst?.stop();
    await nc?.close();
    await srv?.cleanup();
  });

  /** Keys of `channel` deleted the way older versions deleted them: a marker with no TTL. */
  async function oldMarkers(channel: string, n: number) {
    const kv = await nc.jetstream().views.kv(BUCKETS.memory);
    for (let i = 0; i < n; i++) {
      const k = `t.${encodeName(channel)}.old${i}`;
      await kv.put(k, enc.encode(JSON.stringify({ user: "u", message: "m", reply: "r" })));
      await kv.delete(k);
    }
  }
  /** Subjects the memory stream still holds for a channel. */
  const held = async (channel: string) => {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(`KV_${BUCKETS.memory}`, { subjects_filter: `$KV.${BUCKETS.memory}.*.${encodeName(channel)}.*` });
    return Object.keys(info.state.subjects ?? {}).length;
  };

  it("are replaced by expiring ones when their channel is loaded, and then go", async () => {
    await oldMarkers("#legacy", 3);
    await oldMarkers("#untouched", 2);
    expect(await held("#legacy")).toBe(3);
    const r = await request(nc, "rosey.llm.memory.recall", { channel: "#legacy", query: "anything" });
    expect(r.body.success).toBe(true);
    for (let i = 0; i < 100 && (await held("#legacy")) > 0; i++) await new Promise((res) => setTimeout(res, 100));
    expect(await held("#legacy")).toBe(0);
    expect(await held("#untouched")).toBe(2);
  });

  it("leave a key written again since its marker alone", async () => {
    const kv = await nc.jetstream().views.kv(BUCKETS.memory);
    const k = `m.${encodeName("#again")}.fact`;
    await kv.put(k, enc.encode("{}"));
    await kv.delete(k);
    const marker = (await kv.get(k))!.revision;
    await kv.put(k, enc.encode('{"back":true}'));
    const buckets = await provisionBuckets(nc.jetstream(), defaultConfig({ storage }));
    markerRetirer(buckets.memory, BUCKETS.memory, silentLogger)([{ key: k, revision: marker }]);
    await new Promise((res) => setTimeout(res, 300));
    expect(new TextDecoder().decode((await kv.get(k))!.value)).toBe('{"back":true}');
  });
});
