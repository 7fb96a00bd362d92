// Finds and runs a nats-server child process: the embedded server of `npm start` without
// NATS_URL, and the throwaway servers of the tests. Ports are chosen by the OS (free port
// probe), data goes to a given store dir, and `stop` kills by pid and waits for the exit.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
/** Project root, from runtime/ (source) or dist/runtime/ (bundle). */
export const projectRoot = existsSync(join(here, "..", "package.json")) ? resolve(here, "..") : resolve(here, "..", "..");

function versionOf(bin: string): [number, number, number] | null {
  try {
    const out = execFileSync(bin, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(out);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
  } catch {
    return null;
  }
}

/**
 * Path of a nats-server >= 2.10: NATS_SERVER_BIN, then PATH, then the copy that
 * scripts/ensure-nats-server.mjs fetched into .tools/. Throws with what to do otherwise.
 */
export function findNatsServer(env: Record<string, string | undefined> = process.env): string {
  const candidates = [
    env.NATS_SERVER_BIN,
    "nats-server",
    join(projectRoot, ".tools", "nats-server", "usr", "sbin", "nats-server"),
  ].filter((c): c is string => !!c);
  const seen: string[] = [];
  for (const bin of candidates) {
    const v = versionOf(bin);
    if (!v) continue;
    if (v[0] > 2 || (v[0] === 2 && v[1] >= 10)) return bin;
    seen.push(`${bin} is ${v.join(".")}`);
  }
  throw new Error(
    `nats-server >= 2.10 not found${seen.length ? ` (${seen.join("; ")})` : ""}. ` +
      "Run `node scripts/ensure-nats-server.mjs` to fetch one into .tools/, put one on PATH, or set NATS_SERVER_BIN.",
  );
}

/** A port the OS reports free right now. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = tcpConnect({ port, host: "127.0.0.1" }, () => {
      s.destroy();
      res(true);
    });
    s.on("error", () => res(false));
  });
}

export interface NatsServerOptions {
  storeDir: string;
  port?: number;
  /** Extra nats-server.conf text (cluster routes, accounts, tls …). */
  config?: string;
  /** Server name (needed for clusters). */
  name?: string;
  /** Forward the server's log to this function. */
  onLog?: (line: string) => void;
  readyTimeoutMs?: number;
}

export interface NatsServer {
  url: string;
  port: number;
  pid: number;
  storeDir: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts nats-server with JetStream on a free loopback port and waits until it accepts connections. */
export async function startNatsServer(opts: NatsServerOptions): Promise<NatsServer> {
  const bin = findNatsServer();
  const port = opts.port ?? (await freePort());
  mkdirSync(opts.storeDir, { recursive: true });
  const conf = join(opts.storeDir, "nats-server.conf");
  const jsDir = join(opts.storeDir, "jetstream");
  writeFileSync(
    conf,
    [
      `listen: "127.0.0.1:${port}"`,
      opts.name ? `server_name: "${opts.name}"` : "",
      `jetstream { store_dir: ${JSON.stringify(jsDir)} }`,
      opts.config ?? "",
    ].join("\n"),
  );
  const child = spawn(bin, ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => {
    const s = d.toString();
    if (log.length < 20_000) log += s;
    if (opts.onLog) for (const line of s.split("\n")) if (line) opts.onLog(line);
  });
  let exited = false;
  const exit = new Promise<void>((r) => child.once("exit", () => ((exited = true), r())));

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
  while (!(await portOpen(port))) {
    if (exited) throw new Error(`nats-server exited during start-up:\n${log.slice(-2000)}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`nats-server did not listen on ${port} within the timeout:\n${log.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    storeDir: opts.storeDir,
    process: child,
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exit;
      clearTimeout(timer);
    },
  };
}
