// Connection options from configuration: servers, and one of creds / user+password / token,
// with TLS when a CA (and optionally a client certificate) is given.
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator, type ConnectionOptions, type NatsConnection } from "nats";
import type { Config } from "../lib/config";

/** The nats.js options for a configuration (exported for tests). */
export function connectionOptions(config: Config, servers: string[]): ConnectionOptions {
  const n = config.nats;
  const opts: ConnectionOptions = {
    servers,
    name: n.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // Answers from a dying instance must not be lost: keep a buffer while reconnecting.
    reconnectJitter: 100,
  };
  if (n.creds) opts.authenticator = credsAuthenticator(readFileSync(n.creds));
  if (n.user) {
    opts.user = n.user;
    opts.pass = n.password;
  }
  if (n.token) opts.token = n.token;
  if (n.tls_ca || n.tls_cert) {
    opts.tls = {};
    if (n.tls_ca) opts.tls.caFile = n.tls_ca;
    if (n.tls_cert) opts.tls.certFile = n.tls_cert;
    if (n.tls_key) opts.tls.keyFile = n.tls_key;
  }
  return opts;
}

/** Connects, turning the client's terse failures into a message naming the servers. */
export async function connectNats(config: Config, servers: string[]): Promise<NatsConnection> {
  try {
    return await connect(connectionOptions(config, servers));
  } catch (err) {
    throw new Error(`cannot connect to NATS at ${servers.join(",")}: ${(err as Error).message}`);
  }
}
