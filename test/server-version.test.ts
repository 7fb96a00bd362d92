// The service refuses a nats-server older than package.json's minimum with one message naming
// both versions: for the embedded server (a fake binary reporting an old version) and for a
// NATS_URL server (a fake server announcing an old version in its INFO); a real one passes.
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultConfig } from "../lib/config";
import { connectNats } from "../runtime/connect";
import { findNatsServer, MIN_SERVER_VERSION, serverRecentEnough } from "../runtime/nats-server";
import { startTestServer, type TestServer } from "./helpers/nats";

describe("server version check", () => {
  it("takes the minimum from package.json and compares major and minor", () => {
    expect(MIN_SERVER_VERSION).toBe("2.12");
    expect(serverRecentEnough("2.12.0")).toBe(true);
    expect(serverRecentEnough("2.15.1")).toBe(true);
    expect(serverRecentEnough("3.0.0")).toBe(true);
    expect(serverRecentEnough("2.11.9")).toBe(false);
    expect(serverRecentEnough("nats-server: v2.10.4")).toBe(false);
    expect(serverRecentEnough("1.99.0")).toBe(false);
    expect(serverRecentEnough("unknown")).toBe(false);
    expect(serverRecentEnough("2.9.0", "2.10")).toBe(false);
  });
});

describe("refusing an old server", () => {
  const dir = mkdtempSync(join(tmpdir(), "rosey-llm-version-"));
  const oldBin = join(dir, "nats-server");
  let fake: Server;
  let fakeUrl: string;
  let real: TestServer;

  beforeAll(async () => {
    writeFileSync(oldBin, '#!/bin/sh\necho "nats-server: v2.10.4"\n');
    chmodSync(oldBin, 0o755);
    // Just enough NATS protocol for a client to connect: INFO, then PONG for every PING.
    fake = createServer((sock) => {
      sock.write(`INFO ${JSON.stringify({ server_id: "OLD", version: "2.10.4", proto: 1, headers: true, max_payload: 1 << 20 })}\r\n`);
      sock.on("data", (d) => {
        if (d.toString().includes("PING")) sock.write("PONG\r\n");
      });
      sock.on("error", () => {});
    });
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", () => r()));
    fakeUrl = `nats://127.0.0.1:${(fake.address() as { port: number }).port}`;
    real = await startTestServer();
  });

  afterAll(async () => {
    await new Promise((r) => fake.close(r));
    await real.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs `rosey-llm start` with `env` and returns its exit code and stderr. */
  async function start(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
    const base = { ...process.env, ROSEY_DATA_DIR: join(dir, "data"), LOG_LEVEL: "error" } as Record<string, string>;
    delete base.NATS_URL;
    const child = spawn(process.execPath, ["dist/runtime/cli.js", "start"], { env: { ...base, ...env }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    return { code, stderr };
  }

  it("embedded: a NATS_SERVER_BIN too old stops the start with one message", async () => {
    expect(() => findNatsServer({ NATS_SERVER_BIN: oldBin })).toThrow(
      `NATS_SERVER_BIN=${oldBin} is nats-server 2.10.4; rosey-llm needs nats-server 2.12 or newer.`,
    );
    const r = await start({ NATS_SERVER_BIN: oldBin });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toEqual([`rosey-llm: NATS_SERVER_BIN=${oldBin} is nats-server 2.10.4; rosey-llm needs nats-server 2.12 or newer.`]);
  });

  it("NATS_URL: a server announcing an old version stops the start with one message", async () => {
    await expect(connectNats(defaultConfig(), [fakeUrl])).rejects.toThrow(
      /^the NATS server at .*127\.0\.0\.1:\d+ is nats-server 2\.10\.4; rosey-llm needs nats-server 2\.12 or newer: upgrade it$/,
    );
    const r = await start({ NATS_URL: fakeUrl });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^rosey-llm: the NATS server at .* is nats-server 2\.10\.4; rosey-llm needs nats-server 2\.12 or newer/);
  });

  it("NATS_URL: a current server passes", async () => {
    const nc = await connectNats(defaultConfig(), [real.url]);
    expect(serverRecentEnough(nc.info!.version)).toBe(true);
    await nc.close();
  });
});
