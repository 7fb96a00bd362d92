// Connection options from configuration: servers, and one of creds / user+password / token,
// with TLS when a CA (and optionally a client certificate) is given. A refused or failed
// connection is one clear start-up error naming the settings involved, never a secret; so
// is a server older than the minimum the service needs.
import { readFileSync } from "node:fs";
import { connect, createInbox, credsAuthenticator, type ConnectionOptions, type NatsConnection } from "nats";
import type { Config } from "../lib/config";
import { serverRecentEnough, tooOldMessage } from "./nats-server";


/**
 * A new inbox under the connection's own inbox root (configuration's inbox_prefix, which the
 * service's permissions allow): nats.js keeps it in its connection's options, which its public
 * type does not show.
 */
export const ownInbox = (nc: NatsConnection): string =>
  createInbox((nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);

/** How long the first connection may take before the start fails. */
export const CONNECT_TIMEOUT_MS = 5_000;

/** A server URL with any user:password@ part hidden, fit for logs and errors. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, "$1[redacted]@");
}

/** Reads a file named by a setting, or fails naming the setting (not the file's content). */
function readSetting(setting: string, path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`${setting}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The nats.js options for a configuration (exported for tests). */
export function connectionOptions(config: Config, servers: string[]): ConnectionOptions {
  const n = config.nats;
  const opts: ConnectionOptions = {
    servers,
    name: n.name,
    inboxPrefix: n.inbox_prefix,
    // A server that drops the handshake (e.g. it wants a client certificate we do not send)
    // gives the client no error, only silence: fail the start after 5 s rather than 20.
    timeout: CONNECT_TIMEOUT_MS,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // Capturing a stack trace for every request costs ~5 % of a chat's CPU (measured in
    // bench/e2e.bench.ts); errors keep their message, only the caller's async stack is lost.
    noAsyncTraces: true,
    // Answers from a dying instance must not be lost: keep a buffer while reconnecting.
    reconnectJitter: 100,
  };
  if (n.creds) opts.authenticator = credsAuthenticator(readSetting("NATS_CREDS", n.creds));
  if (n.user) {
    opts.user = n.user;
    opts.pass = n.password;
  }
  if (n.token) opts.token = n.token;
  if (n.tls_ca || n.tls_cert) {
    opts.tls = {};
    // Checked here so a wrong path is a message naming the setting, not a TLS stack trace.
    if (n.tls_ca) readSetting("NATS_TLS_CA", n.tls_ca), (opts.tls.caFile = n.tls_ca);
    if (n.tls_cert) readSetting("NATS_TLS_CERT", n.tls_cert), (opts.tls.certFile = n.tls_cert);
    if (n.tls_key) readSetting("NATS_TLS_KEY", n.tls_key), (opts.tls.keyFile = n.tls_key);
  }
  return opts;
}

/** How the connection authenticates, in words that name settings and never their values. */
export function describeAuth(config: Config): string {
  const n = config.nats;
  const parts: string[] = [];
  if (n.creds) parts.push(`creds file ${n.creds} (NATS_CREDS)`);
  if (n.user) parts.push(`user "${n.user}" with ${n.password ? "a" : "no"} password (NATS_USER/NATS_PASSWORD)`);
  if (n.token) parts.push("a token (NATS_TOKEN)");
  if (n.tls_cert) parts.push(`client certificate ${n.tls_cert} (NATS_TLS_CERT/NATS_TLS_KEY)`);
  if (n.tls_ca) parts.push(`CA ${n.tls_ca} (NATS_TLS_CA)`);
  return parts.length ? parts.join(", ") : "no credentials";
}

/** A hint for the usual causes of a failed first connection. */
function hint(message: string, config: Config): string {
  if (/authorization|authentication|auth(entication)? (violation|timeout|expired)|user.*(revoked|expired)/i.test(message)) {
    return "the server refused the credentials";
  }
  if (/certificate|tls|ssl|self.signed|handshake|altname/i.test(message)) return "the TLS handshake failed";
  if (/ECONNREFUSED|CONNECTION_REFUSED/i.test(message)) return "nothing is listening there";
  if (/TIMEOUT/i.test(message)) {
    return config.nats.tls_ca || config.nats.tls_cert
      ? `no answer within ${CONNECT_TIMEOUT_MS} ms; a TLS server that requires a client certificate looks like this (NATS_TLS_CERT/NATS_TLS_KEY)`
      : `no answer within ${CONNECT_TIMEOUT_MS} ms`;
  }
  return "";
}

/** Connects, turning the client's terse failures into a message naming the servers and the auth used. */
export async function connectNats(config: Config, servers: string[]): Promise<NatsConnection> {
  const where = servers.map(redactUrl).join(",") || "(default server)";
  let opts: ConnectionOptions;
  try {
    opts = connectionOptions(config, servers);
  } catch (err) {
    throw new Error(`cannot connect to NATS at ${where}: ${(err as Error).message}`);
  }
  let nc: NatsConnection;
  try {
    nc = await connect(opts);
  } catch (err) {
    const e = err as Error & { code?: string };
    const message = [e.code, e.message].filter(Boolean).join(" ");
    const why = hint(message, config);
    throw new Error(
      `cannot connect to NATS at ${where} using ${describeAuth(config)}: ${why ? `${why} (${e.message})` : e.message}`,
    );
  }
  // Per-message TTL, delete markers and counters are 2.12 features the state relies on.
  const version = nc.info?.version ?? "unknown";
  if (!serverRecentEnough(version)) {
    const message = `${tooOldMessage(`the NATS server at ${redactUrl(nc.getServer() || where)}`, version)}: upgrade it`;
    await nc.close();
    throw new Error(message);
  }
  return nc;
}
