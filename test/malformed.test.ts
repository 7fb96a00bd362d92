// Garbage in the limits and usage buckets (not JSON, or JSON of the wrong shape), written
// straight to KV on a real nats-server: chat, usage and status still answer, the stored
// garbage is replaced by the next write, and the log names the key but never the value.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { defaultConfig } from "../lib/config";
import { encodeName } from "../lib/keys";
import { createLogger } from "../lib/log";
import { BUCKETS } from "../runtime/provision";
import { startService, type RunningService } from "../runtime/service";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request } from "./helpers/service";

let srv: TestServer;
let inst: RunningService;
let nc: NatsConnection;
const lines: string[] = [];
const enc = new TextEncoder();
const today = new Date().toISOString().slice(0, 10);

const GARBAGE = ["SECRET-GARBAGE{{", "[1,2]", '"SECRET-STRING"', "null", "42", '{"requests":"SECRET","tokens":{},"by_provider":7}', '{"m":"SECRET","d":{"w":1,"n":"x","t":"y"},"f":[]}'];

beforeAll(async () => {
  srv = await startTestServer();
  inst = await startService({ config: defaultConfig(), servers: [srv.url], log: createLogger("info", {}, (l) => lines.push(l)) });
  nc = await client(srv.url);
});
afterAll(async () => {
  await nc?.close();
  await inst?.stop();
  await srv?.cleanup();
});

describe.each(GARBAGE.map((g, i) => [i, g] as const))("garbage #%i in the limits and usage buckets", (i, garbage) => {
  const user = `mal-user-${i}`;
  const channel = `#mal-${i}`;

  beforeAll(async () => {
    const js = nc.jetstream();
    const limits = await js.views.kv(BUCKETS.limits);
    const usage = await js.views.kv(BUCKETS.usage);
    await limits.put(`u.${encodeName(user)}`, enc.encode(garbage));
    await limits.put(`c.${encodeName(channel)}`, enc.encode(garbage));
    await limits.put(`g.${today}`, enc.encode(garbage));
    await usage.put(`d.${today}.u.${encodeName(user)}`, enc.encode(garbage));
    await usage.put(`d.${today}.c.${encodeName(channel)}`, enc.encode(garbage));
    await usage.put(`d.${today}.i.${encodeName(`dead-instance-${i}`)}`, enc.encode(garbage));
  });

  it("chat, usage and status still answer, and count from zero", async () => {
    const chat = await request(nc, "rosey.llm.chat", { channel, user, message: "hello" });
    expect(chat.body).toMatchObject({ success: true });
    const mine = await request(nc, "rosey.llm.usage", { user });
    expect(mine.body).toMatchObject({ success: true, requests_today: 1 });
    // The limiter counted from zero too: the garbage was replaced by a real window document.
    expect(mine.body.rate_limits_remaining.per_minute).toBe(9);
    expect((await request(nc, "rosey.llm.usage", { channel })).body).toMatchObject({ success: true, requests_today: 1 });
    expect((await request(nc, "rosey.llm.usage", {})).body.success).toBe(true);
    expect((await request(nc, "rosey.llm.status", { user })).body).toMatchObject({ success: true, rate_limited: false });
  });

  it("logs the key, never the value", () => {
    const logged = lines.filter((l) => l.includes(encodeName(user)) || l.includes(encodeName(channel)));
    expect(logged.length).toBeGreaterThan(0);
    expect(lines.join("\n")).not.toMatch(/SECRET/);
  });
});
