// A throwaway nats-server per test file: random port, temp store dir, killed afterwards.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startNatsServer, type NatsServer, type NatsServerOptions } from "../../runtime/nats-server";

export interface TestServer extends NatsServer {
  /** Stops the server and removes its store. */
  cleanup(): Promise<void>;
}

export async function startTestServer(opts: Partial<NatsServerOptions> = {}): Promise<TestServer> {
  const storeDir = opts.storeDir ?? mkdtempSync(join(tmpdir(), "rosey-llm-test-"));
  const srv = await startNatsServer({ ...opts, storeDir });
  return Object.assign(srv, {
    async cleanup() {
      await srv.stop();
      rmSync(storeDir, { recursive: true, force: true });
    },
  });
}
