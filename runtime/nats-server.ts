// Finds and runs a nats-server child process: the embedded server of `npm start` without
// NATS_URL, and the throwaway servers of the tests. Ports are chosen by the OS (free port
// probe), data goes to a given store dir, and `stop` kills by pid and waits for the exit.
// Also the one place that knows the oldest server version the service runs on.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
/** Project root, from runtime/ (source) or dist/runtime/ (bundle). */
export const projectRoot = existsSync(join(here, "..", "package.json")) ? resolve(here, "..") : resolve(here, "..", "..");

type Version = [number, number, number];

/** The oldest nats-server the service runs on: package.json's engines["nats-server"] (">=2.12"). */
export const MIN_SERVER_VERSION: string = /(\d+\.\d+)/.exec(
  JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")).engines["nats-server"],
)![1];

/** [major, minor, patch] from a version text such as "2.15.1" or "nats-server: v2.10.4". */
function parseVersion(text: string): Version | null {
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

/** Whether a server version text is at least MIN_SERVER_VERSION (an unreadable one is not). */
export function serverRecentEnough(version: string, min: string = MIN_SERVER_VERSION): boolean {
  const v = parseVersion(version);
  const [major, minor] = min.split(".").map(Number);
  return !!v && (v[0] > major || (v[0] === major && v[1] >= minor));
}

/** The one message for a server too old to run on. */
export const tooOldMessage = (what: string, version: string) =>
  `${what} is nats-server ${version}; rosey-llm needs nats-server ${MIN_SERVER_VERSION} or newer`;

function versionOf(bin: string): string | null {
  try {
    const out = execFileSync(bin, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return parseVersion(out)?.join(".") ?? null;
  } catch {
    return null;
  }
}

/** How to run the fetch script from where the user stands. */
const ensureCommand = () => `\`node ${relative(process.cwd(), join(projectRoot, "scripts", "ensure-nats-server.mjs"))}\``;

/**
 * Path of a recent enough nats-server: NATS_SERVER_BIN (used or refused, never passed over),
 * then PATH, then the copy scripts/ensure-nats-server.mjs fetched into .tools/. Throws one
 * message saying what was found and what to do otherwise.
 */
export function findNatsServer(env: Record<string, string | undefined> = process.env): string {
  const named = env.NATS_SERVER_BIN;
  if (named) {
    const v = versionOf(named);
    if (v && serverRecentEnough(v)) return named;
    throw new Error(v ? `${tooOldMessage(`NATS_SERVER_BIN=${named}`, v)}.` : `NATS_SERVER_BIN=${named} does not run.`);
  }
  const seen: string[] = [];
  for (const bin of ["nats-server", join(projectRoot, ".tools", "nats-server", "usr", "sbin", "nats-server")]) {
    const v = versionOf(bin);
    if (v && serverRecentEnough(v)) return bin;
    if (v) seen.push(`${bin} is ${v}`);
  }
  throw new Error(
    `nats-server ${MIN_SERVER_VERSION} or newer not found${seen.length ? ` (${seen.join("; ")})` : ""}. ` +
      `Run ${ensureCommand()} to fetch one into .tools/, put one on PATH, or set NATS_SERVER_BIN.`,
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
