// Handlers that throw, reject or hang: the caller gets a clean error, the process lives on.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

let srv: TestServer;
let inst: TestInstance;
let nc: NatsConnection;
let dir: string;

/** A bundle-shaped module whose handler misbehaves as given. */
const bundle = (name: string, body: string) => `
import { z } from "zod";
export const name = ${JSON.stringify(name)};
export const request = z.object({}).passthrough();
export const response = z.object({ success: z.boolean(), error: z.string().optional(), error_code: z.string().optional() });
export async function handle(req, ctx) { ${body} }
`;

beforeAll(async () => {
  // Bundles import zod from the project's node_modules, so the directory lives inside the project.
  dir = mkdtempSync(join(process.cwd(), "node_modules", ".rosey-faults-"));
  writeFileSync(join(dir, "package.json"), '{"type":"module"}');
  writeFileSync(join(dir, "status.js"), bundle("status", 'return { success: true, ok: "alive" };'));
  writeFileSync(join(dir, "chat.js"), bundle("chat", 'throw new Error("kaboom: secret internals");'));
  writeFileSync(join(dir, "complete.js"), bundle("complete", 'await null; return Promise.reject(new TypeError("async kaboom"));'));
  writeFileSync(join(dir, "summarize.js"), bundle("summarize", "return new Promise(() => {});"));
  writeFileSync(join(dir, "usage.js"), bundle("usage", "await new Promise((r) => setTimeout(r, 300)); return { success: true };"));
  writeFileSync(join(dir, "persona_list.js"), bundle("persona_list", "throw null;"));
  srv = await startTestServer();
  inst = await startInstance(srv.url, { service: { handler_timeout_ms: 500 } as never }, { handlersDir: dir });
  nc = await client(srv.url);
});

afterAll(async () => {
  await nc?.close();
  await inst?.stop();
  await srv?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe("misbehaving handlers", () => {
  it("a synchronous throw becomes an internal error without its text", async () => {
    const r = await request(nc, "rosey.llm.chat", {});
    expect(r.body).toEqual({ success: false, error: "Internal error", error_code: "internal" });
    expect(r.code).toBe("500");
  });

  it("a rejected promise becomes an internal error", async () => {
    const r = await request(nc, "rosey.llm.complete", {});
    expect(r.body.error_code).toBe("internal");
    expect(r.code).toBe("500");
  });

  it("throwing a non-Error value is handled too", async () => {
    const r = await request(nc, "rosey.llm.persona.list", {});
    expect(r.body.error_code).toBe("internal");
  });

  it("a hung handler is answered at its deadline", async () => {
    const started = Date.now();
    const r = await request(nc, "rosey.llm.summarize", {}, 5_000);
    expect(r.body.error).toMatch(/timed out after 500 ms/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("the process is alive afterwards and the stats saw every error", async () => {
    const r = await request(nc, "rosey.llm.status", {});
    expect(r.body).toMatchObject({ success: true, ok: "alive" });
    expect(inst.stats.get("chat")!.num_errors).toBe(1);
    expect(inst.stats.get("complete")!.num_errors).toBe(1);
    expect(inst.stats.get("summarize")!.errors_by_code.internal).toBe(1);
  });

  it("drains: a request in flight when stop begins still gets its answer", async () => {
    const other = await startInstance(srv.url, {}, { handlersDir: dir });
    await inst.stop(); // only `other` serves now
    const pending = request(nc, "rosey.llm.usage", {});
    await new Promise((r) => setTimeout(r, 50));
    await other.stop();
    const r = await pending;
    expect(r.body).toEqual({ success: true });
  });
});
