// The host: connects to NATS, provisions JetStream state, builds the context, loads every
// handler bundle from dist/handlers and serves it as an endpoint of the `rosey-llm` micro
// service, streaming the replies of requests that ask for it (./stream.ts). `stop()` drains: no new requests, in-flight ones finish, events are flushed.
import { readFileSync, readdirSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { headers, type NatsConnection, type Service } from "nats";
import type { z } from "zod";
import type { Config } from "../lib/config";
import type { Clock, Ctx, Logger } from "../lib/context";
import { ERROR_HEADERS } from "../lib/errors";
import { createLogger } from "../lib/log";
import { jsonSchema } from "../lib/schemas/json";
import { ENDPOINTS, endpointSubject, isAdminEndpoint, type EndpointName } from "../lib/subjects";
import { connectNats, redactUrl } from "./connect";
import { createContext } from "./context";
import { createEndpoint, isHandlerModule, type EndpointStats, type HandlerModule } from "./endpoint";
import { projectRoot } from "./nats-server";
import { jetstreamPublisher } from "./js-publish";
import { provisionBuckets, provisionStream } from "./provision";
import { createStreams } from "./stream";

export const SERVICE_NAME = "rosey-llm";

/** The package version, which is the micro service version. */
export const VERSION: string = JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")).version;

export interface ServiceOptions {
  config: Config;
  /** An open connection to use (left open on stop); otherwise one is made from config.nats.servers. */
  nc?: NatsConnection;
  servers?: string[];
  log?: Logger;
  clock?: Clock;
  /** Where the bundles are (default dist/handlers). */
  handlersDir?: string;
  /** fetch for OpenAI-compatible providers (tests). */
  fetch?: typeof fetch;
}

export interface RunningService {
  nc: NatsConnection;
  service: Service;
  ctx: Ctx;
  id: string;
  stats: Map<string, EndpointStats>;
  endpoints: string[];
  /** Drains and stops; resolves when in-flight requests are answered and events flushed. */
  stop(): Promise<void>;
}

/** Imports every bundle in `dir`, checking each exports a handler for a known endpoint. */
export async function loadHandlers(dir: string): Promise<HandlerModule[]> {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".js"));
  } catch {
    throw new Error(`no handler bundles in ${dir}: run \`node build.mjs\` first`);
  }
  const mods: HandlerModule[] = [];
  for (const f of files.sort()) {
    const mod: unknown = await import(pathToFileURL(join(dir, f)).href);
    if (!isHandlerModule(mod)) throw new Error(`${f} is not a handler bundle (needs name, request, response, handle)`);
    if (!(mod.name in ENDPOINTS)) throw new Error(`${f}: unknown endpoint name "${mod.name}"`);
    mods.push(mod);
  }
  return mods;
}

/** JSON Schema text for endpoint metadata (see lib/schemas/json.ts). */
const schemaText = (schema: z.ZodType, io: "input" | "output") => JSON.stringify(jsonSchema(schema, io));

/** Name and channel of a request that failed validation, when they are plain strings. */
function who(input: unknown): { user: string | null; channel: string | null } {
  const o = (typeof input === "object" && input !== null ? input : {}) as Record<string, unknown>;
  const s = (v: unknown) => (typeof v === "string" && v.length > 0 && v.length <= 200 ? v : null);
  return { user: s(o.user) ?? s(o.user_id), channel: s(o.channel) };
}

const LLM_ENDPOINTS = new Set(["chat", "complete", "summarize"]);

export async function startService(opts: ServiceOptions): Promise<RunningService> {
  const { config } = opts;
  const log = opts.log ?? createLogger(config.log.level);
  const servers = opts.servers ?? config.nats.servers ?? [];
  const nc = opts.nc ?? (await connectNats(config, servers));
  const ownConnection = !opts.nc;
  const mods = await loadHandlers(opts.handlersDir ?? join(projectRoot, "dist", "handlers"));

  const js = nc.jetstream();
  const jsm = await nc.jetstreamManager();
  await provisionStream(jsm, config);
  // KV writes and events go out through one publisher of this connection (js-publish.ts).
  const publish = jetstreamPublisher(nc);
  const buckets = await provisionBuckets(js, config, publish);

  // The micro service answers $SRV.PING from the moment it is added. So everything it serves
  // is built before: the endpoints here, the context right after the service is added (it
  // needs the instance id, and reads nothing at start), with no await between adding the
  // service and adding its last endpoint. A client that finds the service through PING finds
  // every endpoint there, answering from the first request, however much the buckets hold.
  let ctx!: Ctx;
  let slog: Logger = log;
  const inflight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };
  const streams = createStreams(nc, config.nats.inbox_prefix);
  const stats = new Map<string, EndpointStats>();
  const bySubject = new Map<string, EndpointStats>();
  const endpoints = mods.map((mod) => {
    // What a handler knows of its request besides the body: its deadline, how large a reply
    // may be, and whether it came on an admin subject (only admins may send there).
    const admin = isAdminEndpoint(mod.name as EndpointName);
    const ep = createEndpoint(mod, (signal, stream) => ({ ...ctx, signal, stream, maxPayload: nc.info?.max_payload, admin }), {
      maxRequestBytes: config.service.max_request_bytes,
      timeoutMs: config.service.handler_timeout_ms,
      track,
      onError(name, reply, err, input) {
        // An operator must act on these: a bug, or a bucket full (the error names the setting to raise).
        const level = reply.error_code === "internal" || reply.error_code === "storage_full" ? "error" : "debug";
        slog[level]("request failed", {
          endpoint: name,
          error_code: reply.error_code,
          error: reply.error_code === "internal" ? String((err as Error)?.stack ?? err) : reply.error,
        });
        if (reply.error_code === "validation" && LLM_ENDPOINTS.has(name)) {
          const w = who(input);
          ctx.events.emit("error", {
            ...w,
            error: reply.error.slice(0, 500),
            // The provider the request would have reached.
            provider: ctx.providers.current().name,
            error_type: "validation",
            endpoint: name,
          });
        }
      },
    });
    const subject = endpointSubject(config.subject_prefix, mod.name as EndpointName);
    stats.set(mod.name, ep.stats);
    bySubject.set(subject, ep.stats);
    const metadata = {
      description: ENDPOINTS[mod.name].description,
      request_schema: schemaText(mod.request, "input"),
      response_schema: schemaText(mod.response, "output"),
      ...(mod.chunk ? { chunk_schema: schemaText(mod.chunk, "output") } : {}),
    };
    return { mod, ep, subject, metadata };
  });

  const service = await nc.services.add({
    name: config.service.name,
    version: VERSION,
    description: "LLM chat, summaries, memory and personas for the Rosey chat bot",
    queue: config.service.queue,
    metadata: { host: hostname(), pid: String(process.pid) },
    // Micro's own counters only see the synchronous part of a handler; report ours instead.
    statsHandler: async (ep) => {
      const s = bySubject.get(ep.subject);
      const target = (ep as unknown as { stats?: Record<string, unknown> }).stats;
      if (s && target) {
        target.num_requests = s.num_requests;
        target.num_errors = s.num_errors;
        target.processing_time = s.processing_time;
        target.average_processing_time = s.average_processing_time;
        // The micro v1 stats schema requires last_error: an empty string until an error.
        target.last_error = s.last_error;
      }
      return s ? { errors_by_code: s.errors_by_code } : undefined;
    },
  });
  // From here to the last addEndpoint: no await (see above).
  const id = service.info().id;
  const instance = { service: config.service.name, version: VERSION, id, started_at: (opts.clock ?? Date).now() };
  slog = log.child({ service: config.service.name, instance: id });
  const context = createContext({ nc, js, jsm, buckets, config, log: slog, instance, clock: opts.clock, fetch: opts.fetch, publish });
  ctx = context.ctx;
  for (const { mod, ep, subject, metadata } of endpoints) {
    service.addEndpoint(mod.name, {
      subject,
      metadata,
      handler: (err, msg) => {
        if (err) return;
        ep.handle({
          data: msg.data,
          reply(body, error) {
            if (!error) return void msg.respond(body);
            const h = headers();
            h.set(ERROR_HEADERS.message, error.description.slice(0, 200));
            h.set(ERROR_HEADERS.status, String(error.code));
            msg.respond(body, { headers: h });
          },
          openStream: () => (msg.reply ? streams.open(msg.reply) : undefined),
        });
      },
    });
  }
  // The server has every endpoint subscription before startService resolves.
  await nc.flush();
  slog.info("service started", { endpoints: mods.map((m) => m.name), version: VERSION, servers: servers.map(redactUrl) });

  let stopping: Promise<void> | undefined;
  return {
    nc,
    service,
    ctx,
    id,
    stats,
    endpoints: mods.map((m) => m.name),
    stop() {
      stopping ??= (async () => {
        slog.info("draining", { inflight: inflight.size });
        await service.stop();
        while (inflight.size > 0) await Promise.allSettled([...inflight]);
        streams.close();
        await context.close();
        if (ownConnection) await nc.drain();
        slog.info("stopped");
      })();
      return stopping;
    },
  };
}
