// rosey-llm command line: start the service, discover running instances (the same
// $SRV.PING/INFO/STATS that `nats micro ls/info` use), send a request, replay events, show
// usage and a live view. Each command declares its flags once, in COMMANDS: they are what
// node:util parseArgs accepts and what `--help` lists.
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { RequestStrategy, type NatsConnection, type ServiceClient } from "nats";
import { ConfigError, loadConfig, type Config } from "../lib/config";
import { ERROR_HEADERS } from "../lib/errors";
import { createLogger } from "../lib/log";
import { EventPayloads } from "../lib/schemas";
import { ENDPOINTS, endpointSubject, type EndpointName } from "../lib/subjects";
import { top } from "./cli-top";
import { usageTable } from "./cli-usage";
import { connectNats } from "./connect";
import { startEmbedded, urlFile } from "./embedded";
import { parseSince, replayEvents } from "./replay";
import { tuneHeap } from "./heap";
import { installLastResort } from "./last-resort";
import { VERSION, startService, type RunningService } from "./service";
import { formatTable } from "./table";

const out = (s: string) => process.stdout.write(s + "\n");

/** A bad command line: reported with the command's help, exit code 2. */
class UsageError extends Error {}

/** A numeric flag value within bounds. */
function number(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`${flag} must be a number from ${min} to ${max}, not "${text}"`);
  return n;
}

type Flags = Record<string, string | boolean | undefined>;

interface Flag {
  type: "string" | "boolean";
  short?: string;
  /** Placeholder of a string flag's value in help. */
  value?: string;
  description: string;
}

interface Command {
  summary: string;
  /** Positional arguments, as help shows them. */
  args?: string;
  flags: Record<string, Flag>;
  /** Runs the command; resolves to the exit code (-1: keeps running). */
  run(config: Config, flags: Flags, positionals: string[]): Promise<number>;
}

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
  tuneHeap();
  const log = createLogger(config.log.level);
  let embedded: Awaited<ReturnType<typeof startEmbedded>> | undefined;
  let running: RunningService | undefined;
  let draining: Promise<void> | undefined;
  /** Stops once: no new requests, in-flight ones answered, events flushed, then the embedded server. */
  const drain = () =>
    (draining ??= (async () => {
      await running?.stop();
      await embedded?.stop();
    })());
  installLastResort(log, drain, config.service.handler_timeout_ms + 10_000);
  let servers = config.nats.servers ?? [];
  if (servers.length === 0) {
    embedded = await startEmbedded(config.data_dir, log, config.nats.embedded_port);
    servers = [embedded.url];
  }
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
    await drain();
    process.exit(); // 0, or 1 when a last-resort handler recorded a failure
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  running.nc.closed().then((err) => {
    if (!draining) {
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
    const rows = stats
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((s) => {
        const eps = s.endpoints ?? [];
        const req = eps.reduce((n, e) => n + e.num_requests, 0);
        const ns = eps.reduce((n, e) => n + e.processing_time, 0);
        const avg = req ? `${(ns / req / 1e6).toFixed(2)} ms` : "-";
        return [s.id, s.version, s.started, req, eps.reduce((n, e) => n + e.num_errors, 0), avg];
      });
    out(formatTable(["ID", "VERSION", "STARTED", "REQUESTS", "ERRORS", "AVG"], rows));
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
      if (!verbose) continue;
      out(`  request:  ${e.metadata?.request_schema ?? "-"}`);
      out(`  response: ${e.metadata?.response_schema ?? "-"}`);
    }
  });
}

async function cmdReq(config: Config, endpoint: string | undefined, json: string | undefined): Promise<number> {
  if (!endpoint || !Object.hasOwn(ENDPOINTS, endpoint)) {
    throw new UsageError(`name an endpoint: ${Object.keys(ENDPOINTS).join(", ")}`);
  }
  return withConnection(config, async (nc) => {
    const subject = endpointSubject(config.subject_prefix, endpoint as EndpointName);
    const m = await nc.request(subject, new TextEncoder().encode(json ?? "{}"), {
      timeout: config.service.handler_timeout_ms + 5_000,
    });
    out(m.string());
    const code = m.headers?.get(ERROR_HEADERS.status);
    if (code) process.stderr.write(`error ${code}: ${m.headers?.get(ERROR_HEADERS.message)}\n`);
    return code ? 1 : 0;
  });
}

async function cmdEvents(config: Config, values: Flags): Promise<void> {
  await withConnection(config, async (nc) => {
    const ac = new AbortController();
    process.once("SIGINT", () => ac.abort());
    let n = 0;
    for await (const e of replayEvents(nc.jetstream(), {
      prefix: config.subject_prefix,
      since: typeof values.since === "string" ? parseSince(values.since) : undefined,
      startSeq: typeof values.seq === "string" ? number("--seq", values.seq, 1, Number.MAX_SAFE_INTEGER) : undefined,
      type: values.type as string | undefined,
      follow: values.follow === true,
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

const HELP_FLAG: Flag = { type: "boolean", short: "h", description: "show this help" };

const COMMANDS: Record<string, Command> = {
  start: {
    summary: "Run the service (an embedded nats-server when NATS_URL is unset).",
    flags: {},
    run: async (config) => (await cmdStart(config), -1),
  },
  ls: {
    summary: "List running instances with their request and error counts.",
    flags: {},
    run: async (config) => (await cmdLs(config), 0),
  },
  info: {
    summary: "List the endpoints with their subjects, queue group and description.",
    flags: { verbose: { type: "boolean", short: "v", description: "also print each endpoint's request and response JSON Schema" } },
    run: async (config, f) => (await cmdInfo(config, f.verbose === true), 0),
  },
  req: {
    summary: "Send one request to an endpoint and print the reply (exit 1 on an error reply).",
    args: "<endpoint> [json]",
    flags: {},
    run: (config, _f, [endpoint, json]) => cmdReq(config, endpoint, json),
  },
  events: {
    summary: "Replay events from the stream.",
    flags: {
      since: { type: "string", value: "when", description: "start this long ago (30m, 1h, 2d) or at an ISO date" },
      seq: { type: "string", value: "n", description: "start at this stream sequence" },
      type: { type: "string", value: "event", description: `only this event (${Object.keys(EventPayloads).join(", ")})` },
      follow: { type: "boolean", short: "f", description: "keep printing new events until Ctrl-C" },
      json: { type: "boolean", description: "print each event as one JSON line" },
    },
    run: async (config, f) => (await cmdEvents(config, f), 0),
  },
  usage: {
    summary: "Requests and tokens per day, user, channel and provider, from the usage bucket.",
    flags: {
      user: { type: "string", value: "name", description: "only this user" },
      channel: { type: "string", value: "name", description: "only this channel" },
      days: { type: "string", value: "n", description: "days back from today, today included (default 7)" },
    },
    run(config, f) {
      const days = f.days === undefined ? 7 : number("--days", f.days as string, 1, 400);
      const query = { user: f.user as string | undefined, channel: f.channel as string | undefined, days };
      return withConnection(config, async (nc) => (out(await usageTable(nc, config, query)), 0));
    },
  },
  top: {
    summary: "Live per-endpoint rate, latency and errors, and provider health, refreshed in place.",
    flags: {
      interval: { type: "string", value: "seconds", description: "time between refreshes, and between the two samples a rate needs (default 2)" },
      once: { type: "boolean", description: "take two samples one interval apart, print one frame and exit" },
    },
    run(config, f) {
      const intervalMs = 1000 * (f.interval === undefined ? 2 : number("--interval", f.interval as string, 0.1, 3600));
      const ac = new AbortController();
      process.once("SIGINT", () => ac.abort());
      const write = (t: string) => process.stdout.write(t);
      return withConnection(config, async (nc) => (await top(nc, config, { intervalMs, once: f.once === true, signal: ac.signal, write }), 0));
    },
  },
};

/** A command's flags as a synopsis: `[--since <when>] [-f|--follow]`. */
const synopsis = (name: string, c: Command) =>
  [
    name,
    c.args,
    ...Object.entries(c.flags).map(([f, d]) => `[${d.short ? `-${d.short}|` : ""}--${f}${d.value ? ` <${d.value}>` : ""}]`),
  ]
    .filter(Boolean)
    .join(" ");

function commandHelp(name: string): string {
  const c = COMMANDS[name];
  const flags = Object.entries({ ...c.flags, help: HELP_FLAG }).map(([f, d]) => [
    `${d.short ? `-${d.short}, ` : "    "}--${f}${d.value ? ` <${d.value}>` : ""}`,
    d.description,
  ]);
  const width = Math.max(...flags.map(([f]) => f.length));
  return [
    `Usage: rosey-llm ${synopsis(name, c)}`,
    "",
    c.summary,
    "",
    "Flags:",
    ...flags.map(([f, d]) => `  ${f.padEnd(width)}  ${d}`),
  ].join("\n");
}

const USAGE = [
  `rosey-llm ${VERSION} — the LLM service of the Rosey chat bot`,
  "",
  "Usage: rosey-llm <command> [flags]",
  "",
  "Commands:",
  ...Object.entries(COMMANDS).flatMap(([name, c]) => [`  ${synopsis(name, c)}`, `      ${c.summary}`]),
  "  help [command]",
  "      This help, or one command's.",
  "",
  "`rosey-llm <command> --help` lists a command's flags. Configuration comes from the",
  "environment (NATS_URL, LLM_PROVIDERS, ROSEY_…; see README.md).",
].join("\n");

/** Runs a command line; returns the exit code (-1: the command keeps running). */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    const topic = cmd === "help" ? rest[0] : undefined;
    if (topic !== undefined && !Object.hasOwn(COMMANDS, topic)) return fail(`unknown command "${topic}"`, USAGE);
    out(topic ? commandHelp(topic) : USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === "--version" || cmd === "version") return out(VERSION), 0;
  const command = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!command) return fail(`unknown command "${cmd}"`, USAGE);
  let parsed;
  try {
    const options = { ...command.flags, help: HELP_FLAG };
    parsed = parseArgs({ args: rest, options, allowPositionals: command.args !== undefined, strict: true });
  } catch (err) {
    // Node's first sentence says it all ("Unknown option '--x'"); the rest is about `--`.
    return fail(`${cmd}: ${(err as Error).message.split(". ")[0]}`, commandHelp(cmd));
  }
  if (parsed.values.help) return out(commandHelp(cmd)), 0;
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) return fail(err.message);
    throw err;
  }
  try {
    return await command.run(config, parsed.values, parsed.positionals);
  } catch (err) {
    if (err instanceof UsageError) return fail(`${cmd}: ${err.message}`, commandHelp(cmd));
    throw err;
  }
}

/** Reports a bad command line on stderr (with help when given); exit code 2. */
function fail(message: string, help?: string): number {
  process.stderr.write(`rosey-llm: ${message}\n${help ? `\n${help}\n` : ""}`);
  return 2;
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
