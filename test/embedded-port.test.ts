// ROSEY_NATS_PORT: the embedded nats-server listens where it is told, and a port someone else
// holds is refused up front (it would otherwise look like our server being up).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connect } from "nats";
import { silentLogger } from "../lib/log";
import { startEmbedded, urlFile } from "../runtime/embedded";
import { freePort } from "../runtime/nats-server";
import { startTestServer } from "./helpers/nats";

describe("embedded nats-server on a configured port", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "rosey-llm-port-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("listens on the configured port", async () => {
    const port = await freePort();
    const server = await startEmbedded(dataDir, silentLogger, port);
    try {
      expect(server.url).toBe(`nats://127.0.0.1:${port}`);
      expect(readFileSync(urlFile(dataDir), "utf8").trim()).toBe(server.url);
      const nc = await connect({ servers: server.url });
      expect(nc.info?.server_name).toBeTruthy();
      await nc.close();
    } finally {
      await server.stop();
    }
  });

  it("refuses a port in use, naming the setting", async () => {
    const other = await startTestServer();
    try {
      await expect(startEmbedded(dataDir, silentLogger, other.port)).rejects.toThrow(`ROSEY_NATS_PORT: port ${other.port} is in use`);
    } finally {
      await other.cleanup();
    }
  });
});
