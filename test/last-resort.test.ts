// The `rosey-llm start` process meets an error nobody handles (injected by a preloaded
// module on SIGUSR2, as a leaked promise or a throw from a timer would): a rejection is
// logged and the process serves on; an exception is logged, the request in flight still
// gets its answer, and the process exits with status 1.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { startTestServer, type TestServer } from "./helpers/nats";
import { startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";
import { client, request } from "./helpers/service";
import { startProcess, type StartedProcess } from "./helpers/start-process";

let srv: TestServer;
let fake: FakeOpenAI;
let nc: NatsConnection;
let dir: string;

/** Polls until `check` holds (up to 20 s). */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** `rosey-llm start` with the injection preloaded. */
const startChild = (inject: "reject" | "throw"): Promise<StartedProcess> =>
  startProcess({
    NODE_OPTIONS: `--import ${pathToFileURL(join(dir, "inject.mjs")).href}`,
    INJECT: inject,
    NATS_URL: srv.url,
    LLM_PROVIDERS: "openai",
    OPENAI_BASE_URL: fake.url,
    OPENAI_API_KEY: "sk-last-resort-test",
  });

const logged = (c: StartedProcess, error: string) => c.logs().find((l) => l.error === error);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "rosey-last-resort-"));
  // What an unhandled error looks like to the process: a promise nobody awaits rejects, or a timer throws.
  writeFileSync(
    join(dir, "inject.mjs"),
    `process.on("SIGUSR2", () => {
      if (process.env.INJECT === "reject") Promise.reject(new Error("injected rejection"));
      else setTimeout(() => { throw new Error("injected exception"); }, 0);
    });\n`,
  );
  srv = await startTestServer();
  fake = await startOpenAIServer({ default: { kind: "reply", delay_ms: 1_000 } });
  nc = await client(srv.url);
});
afterAll(async () => {
  await nc?.close();
  await fake?.close();
  await srv?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe("last-resort handlers of the start process", () => {
  it("log an unhandled rejection with its stack and keep serving", async () => {
    const c = await startChild("reject");
    try {
      c.child.kill("SIGUSR2");
      await until(() => !!logged(c, "injected rejection"), "the rejection to be logged");
      expect(logged(c, "injected rejection")).toMatchObject({ level: "error", msg: "unhandled rejection: serving on" });
      expect(logged(c, "injected rejection")!.stack).toMatch(/inject\.mjs/);
      expect((await request(nc, "rosey.llm.status", {})).body.success).toBe(true);
      expect(c.child.exitCode).toBeNull();
    } finally {
      expect(await c.stop()).toBe(0);
    }
  }, 60_000);

  it("drain on an uncaught exception: the request in flight is answered, then the process exits 1", async () => {
    const c = await startChild("throw");
    try {
      const before = fake.chats().length;
      const inflight = request(nc, "rosey.llm.chat", { channel: "#lr", user: "lr", message: "answer me anyway" }, 20_000);
      await until(() => fake.chats().length > before, "the model call to be in flight");
      c.child.kill("SIGUSR2");
      const r = await inflight;
      expect(r.body).toMatchObject({ success: true, content: expect.stringContaining("answer me anyway") });
      await until(() => c.child.exitCode !== null, "the process to exit by itself");
    } finally {
      expect(await c.stop()).toBe(1);
    }
    const msgs = c.logs().map((l) => l.msg);
    expect(msgs).toContain("uncaught exception: draining, then exiting");
    expect(msgs).toContain("stopped");
    expect(logged(c, "injected exception")!.stack).toMatch(/inject\.mjs/);
  }, 60_000);
});
