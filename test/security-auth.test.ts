// NATS authentication end to end: for each method a nats-server configured for it, the
// service configured through the environment (loadConfig) answering a chat, and wrong
// credentials failing the start with one clear error instead of hanging.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type ConnectionOptions, type NatsConnection } from "nats";
import { loadConfig } from "../lib/config";
import { silentLogger } from "../lib/log";
import { SERVICE_INBOX_PREFIX } from "../lib/config";
import { connectionOptions, redactUrl } from "../runtime/connect";
import { startService, type RunningService } from "../runtime/service";
import { makeOperator, secret, tokenBlock, usersBlock, type OperatorSetup } from "./helpers/auth";
import { makeTestCerts, type TestCerts } from "./helpers/certs";
import { startTestServer, type TestServer } from "./helpers/nats";
import { request } from "./helpers/service";

let certs: TestCerts;
let operator: OperatorSetup;
const servers: TestServer[] = [];

beforeAll(() => {
  certs = makeTestCerts();
  operator = makeOperator();
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.cleanup()));
  certs?.cleanup();
  operator?.cleanup();
});

async function server(config: string): Promise<TestServer> {
  const s = await startTestServer({ config });
  servers.push(s);
  return s;
}

/** Starts the service from environment variables alone, the way `npm start` does. */
function startFromEnv(env: Record<string, string>): Promise<RunningService> {
  return startService({ config: loadConfig({ LOG_LEVEL: "silent", ...env }), log: silentLogger });
}

/** Starts the service, asks for a chat as a client would, and stops it. */
async function chatsWith(env: Record<string, string>, clientOpts: ConnectionOptions): Promise<void> {
  const svc = await startFromEnv(env);
  // The endpoints' subscriptions must reach the server before the first request.
  await svc.nc.flush();
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: env.NATS_URL, ...clientOpts });
    const r = await request(nc, "rosey.llm.chat", { channel: "#auth", user: "alice", message: "hello" });
    expect(r.code).toBeUndefined();
    expect(r.body).toMatchObject({ success: true, provider: "offline" });
  } finally {
    await nc?.close();
    await svc.stop();
    await svc.nc.closed();
  }
}

/** The start must fail (not hang) with a message matching `pattern` and free of `secrets`. */
async function refusesToStart(env: Record<string, string>, pattern: RegExp, secrets: string[] = []): Promise<string> {
  let message = "";
  try {
    const svc = await startFromEnv(env);
    await svc.stop();
  } catch (err) {
    message = (err as Error).message;
  }
  expect(message, "the start should have failed").toMatch(pattern);
  expect(message).toMatch(/^cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+/);
  for (const s of secrets) expect(message).not.toContain(s);
  return message;
}

describe("user and password", () => {
  const password = secret("pw");
  let srv: TestServer;
  beforeAll(async () => {
    srv = await server(usersBlock([{ user: "rosey", password }]));
  });

  it("starts with NATS_USER/NATS_PASSWORD and answers a chat", async () => {
    await chatsWith({ NATS_URL: srv.url, NATS_USER: "rosey", NATS_PASSWORD: password }, { user: "rosey", pass: password });
  });

  it("a wrong password is a clear start-up error naming the settings, not the password", async () => {
    const msg = await refusesToStart(
      { NATS_URL: srv.url, NATS_USER: "rosey", NATS_PASSWORD: "wrong-" + password },
      /refused the credentials/,
      [password, "wrong-" + password],
    );
    expect(msg).toContain("NATS_USER/NATS_PASSWORD");
  });

  it("no credentials at all is refused the same way", async () => {
    await refusesToStart({ NATS_URL: srv.url }, /refused the credentials.*|Authorization/);
  });

  it("credentials embedded in NATS_URL are hidden in the error", async () => {
    const url = srv.url.replace("nats://", `nats://rosey:bad-${password}@`);
    let message = "";
    await startFromEnv({ NATS_URL: url }).then((s) => s.stop(), (e: Error) => void (message = e.message));
    expect(message).toContain("nats://[redacted]@127.0.0.1");
    expect(message).not.toContain(password);
    expect(redactUrl("tls://u:p@h:1")).toBe("tls://[redacted]@h:1");
  });
});

describe("token", () => {
  const token = secret("tok");
  let srv: TestServer;
  beforeAll(async () => {
    srv = await server(tokenBlock(token));
  });

  it("starts with NATS_TOKEN and answers a chat", async () => {
    await chatsWith({ NATS_URL: srv.url, NATS_TOKEN: token }, { token });
  });

  it("a wrong token is a clear start-up error without the token", async () => {
    const msg = await refusesToStart({ NATS_URL: srv.url, NATS_TOKEN: "x" + token }, /refused the credentials/, [token]);
    expect(msg).toContain("NATS_TOKEN");
  });
});

describe("TLS with a CA", () => {
  let tlsSrv: TestServer;
  let mtlsSrv: TestServer;
  beforeAll(async () => {
    [tlsSrv, mtlsSrv] = await Promise.all([server(certs.serverTls(false)), server(certs.serverTls(true))]);
  });

  it("starts with NATS_TLS_CA and answers a chat", async () => {
    await chatsWith({ NATS_URL: tlsSrv.url, NATS_TLS_CA: certs.ca }, { tls: { caFile: certs.ca } });
  });

  it("trusting another CA fails the handshake with a clear error", async () => {
    const msg = await refusesToStart({ NATS_URL: tlsSrv.url, NATS_TLS_CA: certs.otherCa }, /TLS handshake failed/);
    expect(msg).toContain("NATS_TLS_CA");
  });

  it("starts with a client certificate (NATS_TLS_CERT/NATS_TLS_KEY) where the server verifies clients", async () => {
    await chatsWith(
      { NATS_URL: mtlsSrv.url, NATS_TLS_CA: certs.ca, NATS_TLS_CERT: certs.clientCert, NATS_TLS_KEY: certs.clientKey },
      { tls: { caFile: certs.ca, certFile: certs.clientCert, keyFile: certs.clientKey } },
    );
  });

  it("no client certificate where one is required fails the start", async () => {
    let message = "";
    await startFromEnv({ NATS_URL: mtlsSrv.url, NATS_TLS_CA: certs.ca }).then(
      (s) => s.stop(),
      (e: Error) => void (message = e.message),
    );
    expect(message).toMatch(/^cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+ using CA /);
    expect(message).toContain("NATS_TLS_CERT/NATS_TLS_KEY");
  });

  it("a missing CA file is named by its setting", async () => {
    await refusesToStart({ NATS_URL: tlsSrv.url, NATS_TLS_CA: "/nonexistent/ca.pem" }, /NATS_TLS_CA: cannot read \/nonexistent\/ca\.pem: ENOENT/);
  });
});

describe("creds (operator mode, JWT)", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await server(operator.serverConfig);
  });

  it("starts with NATS_CREDS and answers a chat, with JetStream in the account", async () => {
    const creds = operator.userCreds("rosey-llm");
    const client = operator.userCreds("plugin");
    const { credsAuthenticator } = await import("nats");
    const { readFileSync } = await import("node:fs");
    await chatsWith({ NATS_URL: srv.url, NATS_CREDS: creds }, { authenticator: credsAuthenticator(readFileSync(client)) });
  });

  it("creds of an account the server does not trust are refused at start", async () => {
    const msg = await refusesToStart({ NATS_URL: srv.url, NATS_CREDS: operator.strangerCreds }, /refused the credentials/);
    expect(msg).toContain("NATS_CREDS");
  });

  it("a missing creds file is named by its setting", async () => {
    await refusesToStart({ NATS_URL: srv.url, NATS_CREDS: "/nonexistent/x.creds" }, /NATS_CREDS: cannot read \/nonexistent\/x\.creds: ENOENT/);
  });
});

describe("connection options", () => {
  it("use the service's own inbox prefix, so permissions can keep its replies from other users", () => {
    const opts = connectionOptions(loadConfig({ NATS_URL: "nats://127.0.0.1:4222" }), ["nats://127.0.0.1:4222"]);
    expect(opts.inboxPrefix).toBe(SERVICE_INBOX_PREFIX);
  });

  it("take another inbox root from NATS_INBOX_PREFIX (a CLI run under the admin set), and refuse a non-root", () => {
    const opts = connectionOptions(loadConfig({ NATS_INBOX_PREFIX: "_INBOX_ADMIN" }), ["nats://127.0.0.1:4222"]);
    expect(opts.inboxPrefix).toBe("_INBOX_ADMIN");
    expect(() => loadConfig({ NATS_INBOX_PREFIX: "rosey.llm" })).toThrow(/NATS_INBOX_PREFIX/);
  });
});
