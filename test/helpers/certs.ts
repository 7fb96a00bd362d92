// Throwaway TLS material for tests, made with openssl in a temp dir: a CA, a server
// certificate for 127.0.0.1/localhost and a client certificate signed by it, plus a second,
// unrelated CA that a client can wrongly trust. EC keys keep generation fast.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCerts {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A CA that signed nothing here: trusting it must fail the handshake. */
  otherCa: string;
  /** The nats-server `tls { … }` block; `verify` demands a client certificate. */
  serverTls(verify?: boolean): string;
  cleanup(): void;
}

const OPENSSL = "/usr/bin/openssl";
const openssl = (dir: string, args: string[]) => execFileSync(OPENSSL, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });

function selfSignedCa(dir: string, name: string): void {
  openssl(dir, [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "2", "-subj", `/CN=${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

function signedLeaf(dir: string, name: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, [
    "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`,
  ]);
  openssl(dir, [
    "x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`,
  ]);
}

/** Generates the CA, server and client certificates into a fresh temp dir. */
export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "rosey-llm-certs-"));
  selfSignedCa(dir, "ca");
  selfSignedCa(dir, "other-ca");
  signedLeaf(dir, "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  signedLeaf(dir, "client", "extendedKeyUsage=clientAuth\n");
  const p = (f: string) => join(dir, f);
  return {
    dir,
    ca: p("ca.pem"),
    serverCert: p("server.pem"),
    serverKey: p("server.key"),
    clientCert: p("client.pem"),
    clientKey: p("client.key"),
    otherCa: p("other-ca.pem"),
    serverTls(verify = false) {
      return [
        "tls {",
        `  cert_file: ${JSON.stringify(p("server.pem"))}`,
        `  key_file: ${JSON.stringify(p("server.key"))}`,
        `  ca_file: ${JSON.stringify(p("ca.pem"))}`,
        verify ? "  verify: true" : "",
        "  timeout: 2",
        "}",
      ].join("\n");
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
