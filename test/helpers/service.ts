// Starts runtime instances in this process against a test server, with config overrides.
import { connect, type NatsConnection } from "nats";
import { defaultConfig, type ConfigInput } from "../../lib/config";
import { silentLogger } from "../../lib/log";
import type { Clock } from "../../lib/context";
import { startService, type RunningService } from "../../runtime/service";

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
