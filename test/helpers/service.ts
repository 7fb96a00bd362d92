// Starts runtime instances in this process against a test server, with config overrides.
import { afterAll, beforeAll } from "vitest";
import { connect, type NatsConnection } from "nats";
import { defaultConfig, type ConfigInput } from "../../lib/config";
import { silentLogger } from "../../lib/log";
import type { Clock } from "../../lib/context";
import { startService, type RunningService } from "../../runtime/service";
import { startTestServer, type TestServer } from "./nats";

export interface TestInstance extends RunningService {}

/** One runtime instance with its own connection, like a separate process would have. */
export async function startInstance(
  url: string,
  config: Partial<ConfigInput> = {},
  extra: { clock?: Clock; handlersDir?: string; fetch?: typeof fetch } = {},
): Promise<TestInstance> {
  return startService({
    config: defaultConfig({ log: { level: "silent" }, ...config }),
    servers: [url],
    log: silentLogger,
    ...extra,
  });
}

/**
 * A test server, one instance and a client connection for the tests of the enclosing
 * describe block (or file): started before them, stopped after. Read the fields in tests.
 */
export function useService(config: Partial<ConfigInput> = {}): { srv: TestServer; inst: TestInstance; nc: NatsConnection } {
  const f = {} as { srv: TestServer; inst: TestInstance; nc: NatsConnection };
  beforeAll(async () => {
    f.srv = await startTestServer();
    f.inst = await startInstance(f.srv.url, config);
    f.nc = await client(f.srv.url);
  });
  afterAll(async () => {
    await f.nc?.close();
    await f.inst?.stop();
    await f.srv?.cleanup();
  });
  return f;
}

/** A client connection, as another plugin would hold. */
export const client = (url: string): Promise<NatsConnection> => connect({ servers: url, name: "test-client" });

const enc = new TextEncoder();

/** Sends a request (object → JSON, string/bytes as is) and returns body and error headers. */
export async function request(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  timeout = 10_000,
): Promise<{ body: any; code?: string; description?: string }> {
  const data = body instanceof Uint8Array ? body : enc.encode(typeof body === "string" ? body : JSON.stringify(body));
  const m = await nc.request(subject, data, { timeout });
  return {
    body: m.data.length ? m.json() : undefined,
    code: m.headers?.get("Nats-Service-Error-Code") || undefined,
    description: m.headers?.get("Nats-Service-Error") || undefined,
  };
}
