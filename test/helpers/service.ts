// Starts runtime instances in this process against a test server, with config overrides,
// or as a separate process (`node dist/runtime/cli.js start`) a test can SIGKILL.
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { connect, type NatsConnection } from "nats";
import { defaultConfig, type ConfigInput } from "../../lib/config";
import { silentLogger } from "../../lib/log";
import type { Clock } from "../../lib/context";
import { projectRoot } from "../../runtime/nats-server";
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

/** Starts `node dist/runtime/cli.js start` with `env` added, and resolves once it logged "ready". */
export function spawnRuntime(env: Record<string, string>): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(projectRoot, "dist", "runtime", "cli.js"), "start"], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let buf = "";
    const timer = setTimeout(() => {
      p.kill("SIGKILL");
      reject(new Error(`runtime did not log ready within 20 s:\n${buf.slice(-2000)}`));
    }, 20_000);
    p.stderr!.on("data", (d: Buffer) => {
      buf += d.toString();
      if (/"msg":"ready"/.test(buf)) {
        clearTimeout(timer);
        resolve(p);
      }
    });
    p.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`runtime exited with ${code} before ready:\n${buf.slice(-2000)}`));
    });
  });
}
