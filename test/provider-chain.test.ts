// A key or base URL alone reaches the model: `rosey-llm start` with only OPENAI_BASE_URL set
// (pointing at a local OpenAI-compatible server) answers chat from that model, and its start
// log says which chain is active and why.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { startTestServer, type TestServer } from "./helpers/nats";
import { startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";
import { client, request } from "./helpers/service";
import { startProcess, type StartedProcess } from "./helpers/start-process";

describe("provider chain from configuration", () => {
  let srv: TestServer;
  let fake: FakeOpenAI;
  let svc: StartedProcess;
  let nc: NatsConnection;

  beforeAll(async () => {
    srv = await startTestServer();
    fake = await startOpenAIServer({ default: { kind: "reply", content: "Hello from the model" } });
    svc = await startProcess({ NATS_URL: srv.url, OPENAI_BASE_URL: fake.url, OPENAI_MODEL: "local-model" });
    nc = await client(srv.url);
  });

  afterAll(async () => {
    await nc?.close();
    await svc?.stop();
    await fake?.close();
    await srv?.cleanup();
  });

  it("logs the chain and the setting that chose it", () => {
    const line = svc.logs().find((l) => l.msg === "provider chain");
    expect(line).toMatchObject({ level: "info", chain: ["openai", "offline"], why: "LLM_PROVIDERS unset; OPENAI_BASE_URL set → openai, offline" });
  });

  it("answers chat from the model, not offline", async () => {
    const r = await request(nc, "rosey.llm.chat", { channel: "#chain", user: "alice", message: "hi there" }, 20_000);
    expect(r.body).toMatchObject({ success: true, content: "Hello from the model", provider: "openai", model: "local-model" });
    expect(fake.chats()).toHaveLength(1);
    expect(fake.chats()[0].body.messages.at(-1)).toMatchObject({ role: "user", content: expect.stringContaining("hi there") });
  });

  it("stops cleanly on SIGTERM", async () => {
    expect(await svc.stop()).toBe(0);
  });
});
