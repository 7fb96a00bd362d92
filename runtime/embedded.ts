// The embedded nats-server of `npm start` without NATS_URL: JetStream with its store under
// the data dir, on the configured port (ROSEY_NATS_PORT), else on 4222 when free (so other
// plugins find it at the usual address) or else a free port. Its URL is written to
// <data_dir>/nats.url for the CLI's other commands. A server left behind by a killed run
// (pid file) is stopped before a new one starts.
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Logger } from "../lib/context";
import { freePort, startNatsServer, type NatsServer } from "./nats-server";

const isFree = async (port: number) => {
  const { createServer } = await import("node:net");
  return new Promise<boolean>((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen(port, "127.0.0.1", () => s.close(() => res(true)));
  });
};

function stopStale(pidFile: string, log: Logger): void {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    if (cmd.includes("nats-server")) {
      process.kill(pid, "SIGKILL");
      log.warn("stopped a nats-server left behind by an earlier run", { pid });
    }
  } catch {
    // Not running any more.
  }
  rmSync(pidFile, { force: true });
}

/** The URL file the CLI reads to find the embedded server. */
export const urlFile = (dataDir: string) => join(resolve(dataDir), "nats.url");

export async function startEmbedded(dataDir: string, log: Logger, configuredPort?: number): Promise<NatsServer> {
  const storeDir = join(resolve(dataDir), "nats");
  const pidFile = join(storeDir, "nats-server.pid");
  stopStale(pidFile, log);
  // A port someone else listens on would look like our server being up: refuse it first.
  if (configuredPort !== undefined && !(await isFree(configuredPort))) {
    throw new Error(`ROSEY_NATS_PORT: port ${configuredPort} is in use`);
  }
  const port = configuredPort ?? ((await isFree(4222)) ? 4222 : await freePort());
  const server = await startNatsServer({
    storeDir,
    port,
    config: `pid_file: ${JSON.stringify(pidFile)}`,
    onLog: (line) => log.debug("nats-server", { line }),
  });
  writeFileSync(urlFile(dataDir), server.url + "\n");
  log.info("embedded nats-server started", { url: server.url, pid: server.pid, store: storeDir });
  const stop = server.stop;
  server.stop = async () => {
    rmSync(urlFile(dataDir), { force: true });
    await stop();
  };
  // A crash must not leave the child behind.
  process.once("exit", () => {
    try {
      process.kill(server.pid, "SIGKILL");
    } catch {
      // already gone
    }
  });
  return server;
}
