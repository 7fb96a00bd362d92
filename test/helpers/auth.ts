// NATS authentication material for tests: nats-server config blocks for user/password,
// token and per-user permissions, and a decentralised (operator mode) setup with hand-signed
// JWTs — operator, system account, one JetStream-enabled account and user creds files.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAccount, createOperator, createUser, type KeyPair } from "nkeys.js";

/** A random secret of printable characters, distinct per call. */
export const secret = (label: string) => `${label}-${randomBytes(12).toString("hex")}`;

/** Permissions of one user, as in nats-server's `authorization` block. */
export interface Permissions {
  publish?: { allow?: string[]; deny?: string[] };
  subscribe?: { allow?: string[]; deny?: string[] };
  /**
   * Lets the user answer requests it received (publish to their reply subjects) and nothing
   * more: one message each (`true`), or `max` messages (-1: any number) within `expires`.
   */
  allow_responses?: boolean | { max?: number; expires?: string };
}

export interface ConfUser {
  user: string;
  password: string;
  permissions?: Permissions;
}

/** An `authorization { users: [...] }` block; JSON is valid nats-server config syntax. */
export function usersBlock(users: ConfUser[]): string {
  return `authorization ${JSON.stringify({ users }, null, 2)}`;
}

/** An `authorization { token }` block. */
export const tokenBlock = (token: string) => `authorization { token: ${JSON.stringify(token)} }`;

// --- operator mode -----------------------------------------------------------------------

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
function base32(buf: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of buf) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

const b64url = (s: string | Uint8Array) => Buffer.from(s).toString("base64url");

/** Encodes and signs a JWT the way nats-server expects (alg ed25519-nkey, jti = hash of the claims). */
export function signJwt(claims: Record<string, unknown>, signer: KeyPair): string {
  const body: Record<string, unknown> = {
    iat: Math.floor(Date.now() / 1000),
    iss: signer.getPublicKey(),
    ...claims,
  };
  body.jti = base32(createHash("sha256").update(JSON.stringify({ ...body, jti: "" })).digest());
  const head = b64url(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" }));
  const payload = b64url(JSON.stringify(body));
  const sig = signer.sign(Buffer.from(`${head}.${payload}`));
  return `${head}.${payload}.${b64url(sig)}`;
}

/** The text of a `.creds` file for a user JWT and its seed. */
export function credsText(jwt: string, seed: Uint8Array): string {
  return [
    "-----BEGIN NATS USER JWT-----",
    jwt,
    "------END NATS USER JWT------",
    "",
    "************************* IMPORTANT *************************",
    "NKEY Seed printed below can be used to sign and prove identity.",
    "NKEYs are sensitive and should be treated as secrets.",
    "",
    "-----BEGIN USER NKEY SEED-----",
    new TextDecoder().decode(seed),
    "------END USER NKEY SEED------",
    "",
  ].join("\n");
}

const UNLIMITED = { subs: -1, data: -1, payload: -1 };

export interface OperatorSetup {
  dir: string;
  /** nats-server config text: operator, system account and a memory resolver preloaded with the accounts. */
  serverConfig: string;
  /** Writes a creds file for a new user of the application account and returns its path. */
  userCreds(name: string, permissions?: { pub?: object; sub?: object }): string;
  /** A creds file for a user whose account the server does not know (must be refused). */
  strangerCreds: string;
  cleanup(): void;
}

/** Operator, system account, a JetStream-enabled application account, all signed here. */
export function makeOperator(): OperatorSetup {
  const dir = mkdtempSync(join(tmpdir(), "rosey-llm-operator-"));
  const op = createOperator();
  const sys = createAccount();
  const app = createAccount();
  const opJwt = signJwt({ sub: op.getPublicKey(), name: "rosey-test-op", nats: { type: "operator", version: 2 } }, op);
  const accountJwt = (kp: KeyPair, name: string, jetstream: boolean) =>
    signJwt(
      {
        sub: kp.getPublicKey(),
        name,
        nats: {
          limits: {
            ...UNLIMITED,
            imports: -1,
            exports: -1,
            wildcards: true,
            conn: -1,
            leaf: -1,
            ...(jetstream ? { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 } : {}),
          },
          default_permissions: { pub: {}, sub: {} },
          type: "account",
          version: 2,
        },
      },
      op,
    );
  const opFile = join(dir, "operator.jwt");
  writeFileSync(opFile, opJwt);
  const serverConfig = [
    `operator: ${JSON.stringify(opFile)}`,
    `system_account: ${sys.getPublicKey()}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    `  ${sys.getPublicKey()}: ${JSON.stringify(accountJwt(sys, "SYS", false))}`,
    `  ${app.getPublicKey()}: ${JSON.stringify(accountJwt(app, "ROSEY", true))}`,
    "}",
  ].join("\n");

  const userCredsFor = (account: KeyPair, name: string, permissions: { pub?: object; sub?: object } = {}) => {
    const user = createUser();
    const jwt = signJwt(
      {
        sub: user.getPublicKey(),
        name,
        nats: { pub: permissions.pub ?? {}, sub: permissions.sub ?? {}, ...UNLIMITED, type: "user", version: 2 },
      },
      account,
    );
    const file = join(dir, `${name}.creds`);
    writeFileSync(file, credsText(jwt, user.getSeed()), { mode: 0o600 });
    return file;
  };
  return {
    dir,
    serverConfig,
    userCreds: (name, permissions) => userCredsFor(app, name, permissions),
    strangerCreds: userCredsFor(createAccount(), "stranger"),
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
