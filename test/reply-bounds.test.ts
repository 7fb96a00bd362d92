// Every reply fits in one NATS message. Stored values that JSON-escape to six times their
// length (control characters) used to make persona_list larger than max_payload: the reply
// was never sent and every caller timed out. Now lists page or truncate by the server's
// max_payload, read from the connection.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { createClient } from "../lib/client";
import { endpointSubject } from "../lib/subjects";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request, startInstance, useService, type TestInstance } from "./helpers/service";

const CONTROL = "\u0001";

describe("persona_list with 22 personas of 8,000 escaped control characters (1 MB max_payload)", () => {
  const svc = useService();

  it("still answers, page by page, every page under max_payload, every persona once", async () => {
    const llm = createClient(svc.nc);
    for (let i = 0; i < 22; i++) {
      const r = await llm.personaDefine({ name: `ctl-${i}`, system_prompt: CONTROL.repeat(8_000), description: CONTROL.repeat(500) });
      expect(r.success).toBe(true);
    }
    const maxPayload = svc.nc.info!.max_payload;
    const names: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      // Raw bytes, to measure what travelled.
      const m = await svc.nc.request(endpointSubject("rosey", "persona_list"), new TextEncoder().encode(JSON.stringify(cursor ? { cursor } : {})), { timeout: 10_000 });
      expect(m.data.length).toBeLessThanOrEqual(maxPayload);
      const page = m.json<{ success: boolean; personas: Array<{ name: string }>; next_cursor?: string }>();
      expect(page.success).toBe(true);
      names.push(...page.personas.map((p) => p.name));
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== undefined && pages < 50);
    expect(pages).toBeGreaterThan(1);
    expect(names.filter((n) => n.startsWith("ctl-")).sort()).toEqual(Array.from({ length: 22 }, (_, i) => `ctl-${i}`).sort());
    expect(new Set(names).size).toBe(names.length);
  });
});

describe("memory_recall on a server with a 256 KB max_payload", () => {
  let srv: TestServer;
  let inst: TestInstance;
  let nc: NatsConnection;
  beforeAll(async () => {
    srv = await startTestServer({ config: "max_payload: 262144" });
    // Fifty adds in a minute: more than the default write limits allow one channel.
    inst = await startInstance(srv.url, { limits: { channel_writes_per_minute: 0 } as never });
    nc = await client(srv.url);
  });
  afterAll(async () => {
    await nc?.close();
    await inst?.stop();
    await srv?.cleanup();
  });

  it("returns as many of 50 large memories as fit, says truncated, and sends each content once", async () => {
    const subject = endpointSubject("rosey", "memory_add");
    for (let i = 0; i < 50; i++) {
      const r = await request(nc, subject, { channel: "#big", content: `kite note ${i} ${CONTROL.repeat(1_980)}` });
      expect(r.body.success, JSON.stringify(r.body)).toBe(true);
    }
    const m = await nc.request(endpointSubject("rosey", "memory_recall"), new TextEncoder().encode(JSON.stringify({ channel: "#big", query: "kite note", limit: 50 })), { timeout: 10_000 });
    expect(m.data.length).toBeLessThanOrEqual(262_144);
    const r = m.json<{ success: boolean; count: number; truncated?: boolean; memories: string[]; items: object[] }>();
    expect(r).toMatchObject({ success: true, truncated: true });
    expect(r.count).toBeGreaterThan(5);
    expect(r.count).toBeLessThan(50);
    expect(r.memories).toHaveLength(r.count);
    expect(r.items).toHaveLength(r.count);
    for (const item of r.items) expect(item).not.toHaveProperty("content");
  });
});
