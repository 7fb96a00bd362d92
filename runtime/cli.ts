// rosey-llm command line: start the service, discover running instances (the same
// $SRV.PING/INFO/STATS that `nats micro ls/info` use), send a request, replay events.
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { RequestStrategy, type NatsConnection, type ServiceClient } from "nats";
import { ConfigError, loadConfig, type Config } from "../lib/config";
import { createLogger } from "../lib/log";
import { ENDPOINTS, endpointSubject, type EndpointName } from "../lib/subjects";
import { connectNats } from "./connect";
import { startEmbedded, urlFile } from "./embedded";
import { parseSince, replayEvents } from "./replay";
import { SERVICE_NAME, VERSION, startService } from "./service";

const USAGE = `rosey-llm ${VERSION} — the LLM service of the Rosey chat bot

Usage:
  rosey-llm start                       run the service (embedded nats-server when NATS_URL is unset)
  rosey-llm ls                          running instances with request and error counts
  rosey-llm info                        endpoints, subjects and request schemas
  rosey-llm req <endpoint> [json]       send one request and print the reply
  rosey-llm events [--since 1h] [--type response] [--follow] [--json]
                                        replay events from the stream

Configuration comes from the environment (NATS_URL, LLM_PROVIDERS, ROSEY_…; see README.md).`;

const out = (s: string) => process.stdout.write(s + "\n");

/** Servers for the client commands: NATS_URL, else the embedded server `start` wrote down. */
function clientServers(config: Config): string[] {
  if (config.nats.servers?.length) return config.nats.servers;
  const f = urlFile(config.data_dir);
  if (existsSync(f)) return [readFileSync(f, "utf8").trim()];
  throw new Error("NATS_URL is unset and no embedded server is running here (start one with `npm start`)");
}

async function withConnection<T>(config: Config, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connectNats(config, clientServers(config));
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const x of it) all.push(x);
  return all;
}

const pad = (s: unknown, n: number) => String(s).padEnd(n);

async function cmdStart(config: Config): Promise<void> {
  const log = createLogger(config.log.level);
  let embedded: Awaited<ReturnType<typeof startEmbedded>> | undefined;
  let servers = config.nats.servers ?? [];
  if (servers.length === 0) {
    embedded = await startEmbedded(config.data_dir, log, config.nats.embedded_port);
    servers = [embedded.url];
  }
  let running;
  try {
    running = await startService({ config, servers, log });
  } catch (err) {
    await embedded?.stop();
    throw err;
  }
  log.info("ready", {
    nats: servers.join(","),
    providers: config.providers.chain,
    subjects: `${config.subject_prefix}.llm.*`,
  });
  let signals = 0;
  const shutdown = async (sig: string) => {
    if (++signals > 1) {
      log.warn("second signal: exiting now", { signal: sig });
      process.exit(1);
    }
    log.info("shutting down", { signal: sig });
    await running.stop();
    await embedded?.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  running.nc.closed().then((err) => {
    if (signals === 0) {
      log.error("NATS connection closed", { error: err ? String(err) : undefined });
      void embedded?.stop().then(() => process.exit(1));
    }
  });
}

async function cmdLs(config: Config): Promise<void> {
  await withConnection(config, async (nc) => {
    const client: ServiceClient = nc.services.client({ maxWait: 1_000, strategy: RequestStrategy.Timer });
    const stats = await collect(await client.stats(config.service.name));
    if (stats.length === 0) return out(`no ${config.service.name} instances answered`);
    out(`${pad("ID", 24)} ${pad("VERSION", 9)} ${pad("STARTED", 26)} ${pad("REQUESTS", 9)} ${pad("ERRORS", 7)} AVG`);
    for (const s of stats.sort((a, b) => a.id.localeCompare(b.id))) {
      const req = (s.endpoints ?? []).reduce((n, e) => n + e.num_requests, 0);
      const errs = (s.endpoints ?? []).reduce((n, e) => n + e.num_errors, 0);
      const ns = (s.endpoints ?? []).reduce((n, e) => n + e.processing_time, 0);
      const avg = req ? `${(ns / req / 1e6).toFixed(2)} ms` : "-";
      out(`${pad(s.id, 24)} ${pad(s.version, 9)} ${pad(s.started, 26)} ${pad(req, 9)} ${pad(errs, 7)} ${avg}`);
    }
    out(`${stats.length} instance(s)`);
  });
}

async function cmdInfo(config: Config, verbose: boolean): Promise<void> {
  await withConnection(config, async (nc) => {
    const infos = await collect(await nc.services.client({ maxWait: 1_000, strategy: RequestStrategy.Timer }).info(config.service.name));
    if (infos.length === 0) return out(`no ${config.service.name} instances answered`);
    const info = infos[0];
    out(`${info.name} ${info.version} — ${info.description} (${infos.length} instance(s))\n`);
    for (const e of info.endpoints) {
      out(`${pad(e.name, 14)} ${pad(e.subject, 26)} queue=${e.queue_group}  ${e.metadata?.description ?? ""}`);
      if (verbose && e.metadata?.request_schema) out(`  request: ${e.metadata.request_schema}`);
    }
  });
}

async function cmdReq(config: Config, endpoint: string | undefined, json: string | undefined): Promise<number> {
  if (!endpoint || !(endpoint in ENDPOINTS)) {
    throw new Error(`req: name an endpoint: ${Object.keys(ENDPOINTS).join(", ")}`);
  }
  return withConnection(config, async (nc) => {
    const subject = endpointSubject(config.subject_prefix, endpoint as EndpointName);
    const m = await nc.request(subject, new TextEncoder().encode(json ?? "{}"), {
      timeout: config.service.handler_timeout_ms + 5_000,
    });
    out(m.string());
    const code = m.headers?.get("Nats-Service-Error-Code");
    if (code) process.stderr.write(`error ${code}: ${m.headers?.get("Nats-Service-Error")}\n`);
    return code ? 1 : 0;
  });
}

async function cmdEvents(config: Config, args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      since: { type: "string" },
      seq: { type: "string" },
      type: { type: "string" },
      follow: { type: "boolean", short: "f" },
      json: { type: "boolean" },
    },
  });
  await withConnection(config, async (nc) => {
    const ac = new AbortController();
    process.once("SIGINT", () => ac.abort());
    let n = 0;
    for await (const e of replayEvents(nc.jetstream(), {
      prefix: config.subject_prefix,
      since: values.since ? parseSince(values.since) : undefined,
      startSeq: values.seq ? Number(values.seq) : undefined,
      type: values.type,
      follow: values.follow,
      signal: ac.signal,
    })) {
      n++;
      if (values.json) out(JSON.stringify(e.event));
      else {
        const { event, timestamp, id: _id, version: _v, source: _s, ...rest } = e.event;
        out(`${pad(e.seq, 6)} ${timestamp} ${pad(event, 16)} ${JSON.stringify(rest)}`);
      }
    }
    if (!values.json) process.stderr.write(`${n} event(s)\n`);
  });
}

/** Runs a command line; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    out(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === "--version" || cmd === "version") return out(VERSION), 0;
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`rosey-llm: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  switch (cmd) {
    case "start":
      await cmdStart(config);
      return -1; // keeps running
    case "ls":
      await cmdLs(config);
      return 0;
    case "info":
      await cmdInfo(config, rest.includes("-v") || rest.includes("--verbose"));
      return 0;
    case "req":
      return cmdReq(config, rest[0], rest[1]);
    case "events":
      await cmdEvents(config, rest);
      return 0;
    default:
      process.stderr.write(`rosey-llm: unknown command "${cmd}"\n\n${USAGE}\n`);
      return 2;
  }
}

const isMain = process.argv[1] && /cli\.(js|ts)$/.test(process.argv[1]);
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exit(code);
    },
    (err) => {
      process.stderr.write(`rosey-llm: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
