// Configuration: environment variables first, then an optional JSON file (ROSEY_CONFIG)
// for the same settings and the rest. Validated once at start-up with zod and handed down
// through ctx; nothing reads process.env after that. A bad value stops the start with one
// message naming the setting as the operator wrote it (env var name or JSON path).
import { readFileSync } from "node:fs";
import { z } from "zod";
import { Persona, PersonaName } from "../schemas";

const posInt = z.number().int().positive();
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const nonNegInt = z.number().int().min(0);

const ProviderConfig = z.strictObject({
  /** `openai` = any OpenAI-compatible server; `offline` = the built-in deterministic model. */
  kind: z.enum(["openai", "offline"]).default("openai"),
  base_url: z.url().optional(),
  api_key: z.string().optional(),
  model: z.string().min(1).default("gpt-4o-mini"),
  // Per attempt; with the 25 s deadline this leaves time to fall back to the next provider.
  timeout_ms: posInt.default(8_000),
  max_retries: nonNegInt.max(10).default(1),
  headers: z.record(z.string(), z.string()).default({}),
});
export type ProviderConfig = z.infer<typeof ProviderConfig>;

/** Where embeddings are asked for when no base URL is given. */
export const OPENAI_EMBEDDINGS_URL = "https://api.openai.com/v1";

/**
 * The embeddings server memories and recall queries are sent to (any OpenAI-compatible
 * `/embeddings`: OpenAI, Ollama, vLLM). Off while `model` is unset: recall is lexical then.
 */
const EmbeddingsConfig = z.strictObject({
  model: z.string().min(1).optional(),
  base_url: z.url().default(OPENAI_EMBEDDINGS_URL),
  /** Unset with OpenAI's base URL: the openai provider's key (OPENAI_API_KEY) is used. */
  api_key: z.string().optional(),
  /** Asks for shorter vectors (OpenAI text-embedding-3 and servers that support `dimensions`). */
  dimensions: posInt.max(8_192).optional(),
  /** Budget of embedding a memory (memory_add, background backfill). */
  timeout_ms: posInt.default(5_000),
  /** Budget of embedding a recall query or chat message; recall is lexical when it runs out. */
  query_timeout_ms: posInt.default(2_000),
  /** Put before a query and before a memory's text, for models that expect them (nomic-embed-text). */
  query_prefix: z.string().max(200).default(""),
  document_prefix: z.string().max(200).default(""),
  headers: z.record(z.string(), z.string()).default({}),
});
export type EmbeddingsConfig = z.infer<typeof EmbeddingsConfig>;

const LimitOverride = z.strictObject({
  per_hour: nonNegInt.optional(),
});

const validTimeZone = (tz: string) => {
  // The default needs no check (nor the time zone data a check loads: lib/limiter/calendar.ts).
  if (tz === "UTC") return true;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
};

/**
 * Root of the service's own reply subjects (JetStream API answers, KV values, publish acks,
 * KV watch deliveries). Not `_INBOX`: clients commonly may subscribe to `_INBOX.>`, and this
 * traffic carries bucket contents, so it gets a root that permissions grant the service alone.
 */
export const SERVICE_INBOX_PREFIX = "_INBOX_ROSEY_LLM";

export const Config = z.strictObject({
  nats: z
    .strictObject({
      servers: z.array(z.string().min(1)).optional(),
      creds: z.string().optional(),
      user: z.string().optional(),
      password: z.string().optional(),
      token: z.string().optional(),
      tls_ca: z.string().optional(),
      tls_cert: z.string().optional(),
      tls_key: z.string().optional(),
      name: z.string().default("rosey-llm"),
      /**
       * Root of the connection's reply subjects. The service's own (the default) carries bucket
       * contents; a CLI run by an administrator uses the admin set's root instead.
       */
      inbox_prefix: z
        .string()
        .regex(/^_INBOX[A-Za-z0-9_-]*$/, "an inbox root: _INBOX followed by letters, digits, '-' or '_'")
        .default(SERVICE_INBOX_PREFIX),
      /** Port of the embedded nats-server (NATS_URL unset); unset: 4222 when free, else any free port. */
      embedded_port: z.number().int().min(1).max(65535).optional(),
    })
    .default({ name: "rosey-llm", inbox_prefix: SERVICE_INBOX_PREFIX }),
  subject_prefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, "one subject token: letters, digits, '-' and '_'")
    .default("rosey"),
  service: z
    .strictObject({
      name: z.string().default("rosey-llm"),
      queue: z.string().default("rosey-llm"),
      max_request_bytes: posInt.default(256 * 1024),
      handler_timeout_ms: posInt.default(30_000),
      instance: z.string().optional(),
    })
    .default({ name: "rosey-llm", queue: "rosey-llm", max_request_bytes: 256 * 1024, handler_timeout_ms: 30_000 }),
  providers: z
    .strictObject({
      chain: z.array(z.string().min(1)).min(1).default(["offline"]),
      /** How the chain was chosen, for the start log; loadConfig sets it. */
      chain_reason: z.string().optional(),
      defs: z.record(z.string(), ProviderConfig).default({}),
      failure_threshold: posInt.default(3),
      cooldown_ms: posInt.default(30_000),
      deadline_ms: posInt.default(25_000),
    })
    .default({ chain: ["offline"], defs: {}, failure_threshold: 3, cooldown_ms: 30_000, deadline_ms: 25_000 }),
  limits: z
    .strictObject({
      user_per_minute: nonNegInt.default(10),
      user_per_hour: nonNegInt.default(100),
      user_per_day: nonNegInt.default(500),
      user_tokens_per_day: nonNegInt.default(50_000),
      channel_per_hour: nonNegInt.default(300),
      global_tokens_per_day: nonNegInt.default(1_000_000),
      threshold: z.number().gt(0).max(1).default(0.8),
      exempt_users: z.array(z.string()).default([]),
      exempt_channels: z.array(z.string()).default([]),
      /**
       * Exempt names are whatever a caller puts in `user` and `channel`: with this set they
       * count only on the admin subjects (whose callers the operator chose by permission),
       * and chat, complete and summarize limit every name.
       */
      exempt_admin_only: z.boolean().default(false),
      /** Memory adds, forgets, context resets and persona changes per user and minute (0: no limit). */
      user_writes_per_minute: nonNegInt.default(10),
      /** The same writes per channel and minute (0: no limit). */
      channel_writes_per_minute: nonNegInt.default(30),
      channels: z.record(z.string(), LimitOverride).default({}),
    })
    .default({
      user_per_minute: 10,
      user_per_hour: 100,
      user_per_day: 500,
      user_tokens_per_day: 50_000,
      channel_per_hour: 300,
      global_tokens_per_day: 1_000_000,
      threshold: 0.8,
      exempt_users: [],
      exempt_channels: [],
      exempt_admin_only: false,
      user_writes_per_minute: 10,
      channel_writes_per_minute: 30,
      channels: {},
    }),
  timezone: z.string().refine(validTimeZone, "not an IANA time zone").default("UTC"),
  replicas: z.number().int().min(1).max(5).default(1),
  events: z
    .strictObject({
      max_age_days: posInt.default(30),
      /** The stream drops its oldest events beyond this size. */
      max_bytes: posInt.default(GiB),
    })
    .prefault({}),
  /** Size and age limits of the KV buckets (README: Storage and limits). */
  storage: z
    .strictObject({
      /** Full: a request needing a window document of a new user or channel gets storage_full. */
      limits_max_bytes: posInt.default(256 * MiB),
      /** Full: the oldest days' counters are dropped. */
      usage_max_bytes: posInt.default(512 * MiB),
      /** How long a day's counters are kept after its last write. */
      usage_max_age_days: posInt.default(400),
      /** Full: defining a persona or selecting one for a new channel gets storage_full. */
      personas_max_bytes: posInt.default(64 * MiB),
      /** Personas persona_define may have defined at once (built-in and configured ones aside); one more gets storage_full. */
      personas_max_defined: posInt.default(1_000),
      /** Full: new memories, exchanges and summaries get storage_full; updates and deletes still work. */
      memory_max_bytes: posInt.default(GiB),
      /** How long a stored exchange or summary of a channel's conversation is kept. */
      history_ttl_days: posInt.default(30),
      /** How long the marker of a deleted key stays for watching caches to see, before it expires too. */
      marker_ttl_seconds: posInt.default(900),
    })
    .prefault({}),
  memory: z
    .strictObject({
      history_messages: posInt.default(20),
      context_tokens: posInt.default(4_000),
      summarize_after: posInt.default(50),
      summaries_in_context: nonNegInt.default(3),
      memories_in_context: nonNegInt.default(5),
      max_memories_per_channel: posInt.default(100),
      decay_days: posInt.default(90),
      /** Channels whose memory this instance keeps in RAM between uses (least recently used go first). */
      cache_channels: posInt.default(1_000),
      /** Megabytes those channels may take, estimated from what they hold. */
      cache_mb: posInt.default(12),
    })
    .default({
      history_messages: 20,
      context_tokens: 4_000,
      summarize_after: 50,
      summaries_in_context: 3,
      memories_in_context: 5,
      max_memories_per_channel: 100,
      decay_days: 90,
      cache_channels: 1_000,
      cache_mb: 12,
    }),
  embeddings: EmbeddingsConfig.prefault({}),
  personas: z.record(PersonaName, Persona.omit({ name: true, builtin: true })).default({}),
  log: z.strictObject({ level: z.enum(["debug", "info", "warn", "error", "silent"]).default("info") }).default({ level: "info" }),
  data_dir: z.string().default(".data"),
});
export type Config = z.infer<typeof Config>;
export type ConfigInput = z.input<typeof Config>;

/** Raised for invalid configuration; the message names the setting. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;
type Path = ReadonlyArray<string>;

/** Environment variable → where it lands in Config and how its text becomes a value. */
export const ENV: ReadonlyArray<[string, Path, "string" | "number" | "list" | "boolean"]> = [
  ["NATS_URL", ["nats", "servers"], "list"],
  ["NATS_CREDS", ["nats", "creds"], "string"],
  ["NATS_USER", ["nats", "user"], "string"],
  ["NATS_PASSWORD", ["nats", "password"], "string"],
  ["NATS_TOKEN", ["nats", "token"], "string"],
  ["NATS_TLS_CA", ["nats", "tls_ca"], "string"],
  ["NATS_TLS_CERT", ["nats", "tls_cert"], "string"],
  ["NATS_TLS_KEY", ["nats", "tls_key"], "string"],
  ["NATS_INBOX_PREFIX", ["nats", "inbox_prefix"], "string"],
  ["ROSEY_NATS_PORT", ["nats", "embedded_port"], "number"],
  ["ROSEY_SUBJECT_PREFIX", ["subject_prefix"], "string"],
  ["ROSEY_MAX_REQUEST_BYTES", ["service", "max_request_bytes"], "number"],
  ["ROSEY_HANDLER_TIMEOUT_MS", ["service", "handler_timeout_ms"], "number"],
  ["ROSEY_INSTANCE", ["service", "instance"], "string"],
  ["LLM_PROVIDERS", ["providers", "chain"], "list"],
  ["ROSEY_PROVIDER_FAILURES", ["providers", "failure_threshold"], "number"],
  ["ROSEY_PROVIDER_COOLDOWN_MS", ["providers", "cooldown_ms"], "number"],
  ["ROSEY_PROVIDER_DEADLINE_MS", ["providers", "deadline_ms"], "number"],
  ["ROSEY_LIMIT_USER_PER_MINUTE", ["limits", "user_per_minute"], "number"],
  ["ROSEY_LIMIT_USER_PER_HOUR", ["limits", "user_per_hour"], "number"],
  ["ROSEY_LIMIT_USER_PER_DAY", ["limits", "user_per_day"], "number"],
  ["ROSEY_LIMIT_USER_TOKENS_PER_DAY", ["limits", "user_tokens_per_day"], "number"],
  ["ROSEY_LIMIT_CHANNEL_PER_HOUR", ["limits", "channel_per_hour"], "number"],
  ["ROSEY_LIMIT_GLOBAL_TOKENS_PER_DAY", ["limits", "global_tokens_per_day"], "number"],
  ["ROSEY_THRESHOLD", ["limits", "threshold"], "number"],
  ["ROSEY_EXEMPT_USERS", ["limits", "exempt_users"], "list"],
  ["ROSEY_EXEMPT_CHANNELS", ["limits", "exempt_channels"], "list"],
  ["ROSEY_EXEMPT_ADMIN_ONLY", ["limits", "exempt_admin_only"], "boolean"],
  ["ROSEY_LIMIT_USER_WRITES_PER_MINUTE", ["limits", "user_writes_per_minute"], "number"],
  ["ROSEY_LIMIT_CHANNEL_WRITES_PER_MINUTE", ["limits", "channel_writes_per_minute"], "number"],
  ["ROSEY_TIMEZONE", ["timezone"], "string"],
  ["ROSEY_REPLICAS", ["replicas"], "number"],
  ["ROSEY_EVENTS_MAX_AGE_DAYS", ["events", "max_age_days"], "number"],
  ["ROSEY_EVENTS_MAX_BYTES", ["events", "max_bytes"], "number"],
  ["ROSEY_LIMITS_MAX_BYTES", ["storage", "limits_max_bytes"], "number"],
  ["ROSEY_USAGE_MAX_BYTES", ["storage", "usage_max_bytes"], "number"],
  ["ROSEY_USAGE_MAX_AGE_DAYS", ["storage", "usage_max_age_days"], "number"],
  ["ROSEY_PERSONAS_MAX_BYTES", ["storage", "personas_max_bytes"], "number"],
  ["ROSEY_PERSONAS_MAX_DEFINED", ["storage", "personas_max_defined"], "number"],
  ["ROSEY_MEMORY_MAX_BYTES", ["storage", "memory_max_bytes"], "number"],
  ["ROSEY_HISTORY_TTL_DAYS", ["storage", "history_ttl_days"], "number"],
  ["ROSEY_MARKER_TTL_SECONDS", ["storage", "marker_ttl_seconds"], "number"],
  ["ROSEY_MEMORY_CACHE_CHANNELS", ["memory", "cache_channels"], "number"],
  ["ROSEY_MEMORY_CACHE_MB", ["memory", "cache_mb"], "number"],
  ["ROSEY_EMBEDDINGS_MODEL", ["embeddings", "model"], "string"],
  ["ROSEY_EMBEDDINGS_BASE_URL", ["embeddings", "base_url"], "string"],
  ["ROSEY_EMBEDDINGS_API_KEY", ["embeddings", "api_key"], "string"],
  ["ROSEY_EMBEDDINGS_DIMENSIONS", ["embeddings", "dimensions"], "number"],
  ["ROSEY_EMBEDDINGS_TIMEOUT_MS", ["embeddings", "timeout_ms"], "number"],
  ["ROSEY_EMBEDDINGS_QUERY_TIMEOUT_MS", ["embeddings", "query_timeout_ms"], "number"],
  ["ROSEY_EMBEDDINGS_QUERY_PREFIX", ["embeddings", "query_prefix"], "string"],
  ["ROSEY_EMBEDDINGS_DOCUMENT_PREFIX", ["embeddings", "document_prefix"], "string"],
  ["ROSEY_DATA_DIR", ["data_dir"], "string"],
  ["LOG_LEVEL", ["log", "level"], "string"],
];

/** How an operator names a setting: its environment variable and its path in the ROSEY_CONFIG file. */
export function settingName(path: string): string {
  const env = ENV.find(([, p]) => p.join(".") === path)?.[0];
  return env ? `${env} (${path})` : path;
}

/**
 * Built-in OpenAI-compatible providers and the env vars that configure them, in the order an
 * unset LLM_PROVIDERS chains them (each one whose key or base URL is set, then offline).
 */
const PROVIDER_ENV: Record<string, { base_url?: string; key?: string; url?: string; model: string; modelDefault: string; headers?: Record<string, string> }> = {
  openai: { key: "OPENAI_API_KEY", url: "OPENAI_BASE_URL", model: "OPENAI_MODEL", modelDefault: "gpt-4o-mini" },
  openrouter: {
    base_url: "https://openrouter.ai/api/v1",
    key: "OPENROUTER_API_KEY",
    url: "OPENROUTER_BASE_URL",
    model: "OPENROUTER_MODEL",
    modelDefault: "openai/gpt-4o-mini",
    headers: { "HTTP-Referer": "https://github.com/rosey-bot/rosey-llm", "X-Title": "rosey-llm" },
  },
  ollama: {
    base_url: "http://localhost:11434/v1",
    url: "OLLAMA_BASE_URL",
    model: "OLLAMA_MODEL",
    modelDefault: "llama3.2",
  },
};

function setPath(obj: Record<string, unknown>, path: Path, value: unknown): void {
  let cur = obj;
  for (const p of path.slice(0, -1)) {
    if (typeof cur[p] !== "object" || cur[p] === null) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[path[path.length - 1]] = value;
}

function envValue(text: string, type: "string" | "number" | "list" | "boolean"): unknown {
  if (type === "boolean") {
    const t = text.trim().toLowerCase();
    // Anything else stays text, which the schema refuses naming the setting.
    return t === "true" || t === "1" ? true : t === "false" || t === "0" ? false : text;
  }
  if (type === "number") {
    const n = Number(text.trim());
    return text.trim() === "" || Number.isNaN(n) ? text : n;
  }
  if (type === "list") return text.split(",").map((s) => s.trim()).filter(Boolean);
  return text;
}

/** ` at line L, column C` of a JSON.parse error, from the offset its message gives; "" without one. */
function jsonErrorPlace(text: string, err: Error): string {
  const m = /position (\d+)/.exec(err.message);
  if (!m) return "";
  const before = text.slice(0, Number(m[1])).split("\n");
  return ` at line ${before.length}, column ${before[before.length - 1].length + 1}`;
}

/**
 * Builds the configuration from the environment and, when ROSEY_CONFIG names one, a JSON
 * file. Environment variables win over the file. Throws ConfigError naming the setting.
 */
export function loadConfig(env: Env = process.env, readFile: (p: string) => string = (p) => readFileSync(p, "utf8")): Config {
  let raw: Record<string, unknown> = {};
  const origin = new Map<string, string>();
  if (env.ROSEY_CONFIG) {
    let text: string;
    try {
      text = readFile(env.ROSEY_CONFIG);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      throw new ConfigError(`ROSEY_CONFIG: cannot read ${env.ROSEY_CONFIG}${typeof code === "string" ? ` (${code})` : ""}`);
    }
    try {
      raw = JSON.parse(text);
    } catch (err) {
      // The parser's message quotes the text around the error, which may be a key: give the place only.
      throw new ConfigError(`ROSEY_CONFIG: ${env.ROSEY_CONFIG} is not valid JSON${jsonErrorPlace(text, err as Error)}`);
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw new ConfigError(`ROSEY_CONFIG: ${env.ROSEY_CONFIG} must hold a JSON object`);
    }
  }
  for (const [name, path, type] of ENV) {
    const text = env[name];
    if (text === undefined || text === "") continue;
    setPath(raw, path, envValue(text, type));
    origin.set(path.join("."), name);
  }
  // Built-in OpenAI-compatible providers: file values first, env on top, defaults last.
  // Each one the operator gave a key or base URL (env or file) is "configured".
  const providers = (raw.providers ?? {}) as Record<string, unknown>;
  const defs = (providers.defs ?? {}) as Record<string, Record<string, unknown>>;
  const configured: Array<[name: string, why: string]> = [];
  const fromFile = (name: string) => defs[name]?.api_key !== undefined || defs[name]?.base_url !== undefined;
  for (const [name, spec] of Object.entries(PROVIDER_ENV)) {
    const d: Record<string, unknown> = { ...(defs[name] ?? {}) };
    const set = [spec.key, spec.url].filter((v): v is string => !!v && !!env[v]);
    if (set.length) configured.push([name, `${set.join(" and ")} set`]);
    else if (fromFile(name)) configured.push([name, `providers.defs.${name} in ROSEY_CONFIG`]);
    const url = spec.url && env[spec.url];
    if (url) (d.base_url = url), origin.set(`providers.defs.${name}.base_url`, spec.url!);
    else if (d.base_url === undefined && spec.base_url) d.base_url = spec.base_url;
    const keyText = spec.key && env[spec.key];
    if (keyText) d.api_key = keyText;
    const model = env[spec.model];
    if (model) (d.model = model), origin.set(`providers.defs.${name}.model`, spec.model);
    else if (d.model === undefined) d.model = spec.modelDefault;
    if (spec.headers) d.headers = { ...spec.headers, ...((d.headers as object) ?? {}) };
    defs[name] = d;
  }
  for (const name of Object.keys(defs)) {
    if (!(name in PROVIDER_ENV) && name !== "offline" && defs[name]?.kind !== "offline" && fromFile(name)) {
      configured.push([name, `providers.defs.${name} in ROSEY_CONFIG`]);
    }
  }
  defs.offline = { kind: "offline", model: "offline-echo-1", ...(defs.offline ?? {}) };
  setPath(raw, ["providers", "defs"], defs);
  let why: string;
  if (providers.chain === undefined) {
    setPath(raw, ["providers", "chain"], [...configured.map(([name]) => name), "offline"]);
    why = `LLM_PROVIDERS unset; ${configured.length ? configured.map(([, w]) => w).join("; ") : "no provider key or base URL set"}`;
  } else {
    why = origin.has("providers.chain") ? "LLM_PROVIDERS set" : "providers.chain in ROSEY_CONFIG";
  }

  const parsed = Config.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue.path.map(String).join(".");
    const setting = origin.get(path) ?? (path || "configuration");
    throw new ConfigError(`invalid setting ${setting}: ${issue.message}`);
  }
  const config = parsed.data;
  config.providers.chain_reason = `${why} → ${config.providers.chain.join(", ")}`;
  for (const name of config.providers.chain) {
    if (!config.providers.defs[name]) {
      throw new ConfigError(
        `invalid setting ${origin.get("providers.chain") ?? "providers.chain"}: unknown provider "${name}" (known: ${Object.keys(config.providers.defs).join(", ")})`,
      );
    }
  }
  checkEmbeddings(config);
  return config;
}

/**
 * Embeddings need a model to be on; OpenAI's server also needs a key, and gets the openai
 * provider's when the embeddings have none of their own (no other server is sent that key).
 */
function checkEmbeddings(config: Config): void {
  const e = config.embeddings;
  const isOpenAI = new URL(e.base_url).hostname === new URL(OPENAI_EMBEDDINGS_URL).hostname;
  if (e.model === undefined) {
    if (e.base_url !== OPENAI_EMBEDDINGS_URL || e.api_key !== undefined) {
      throw new ConfigError(`invalid setting ${settingName("embeddings.model")}: an embedding model is needed to use the embeddings server (e.g. nomic-embed-text, text-embedding-3-small)`);
    }
    return;
  }
  if (e.api_key === undefined && isOpenAI) e.api_key = config.providers.defs.openai?.api_key;
  if (e.api_key === undefined && isOpenAI) {
    throw new ConfigError(`invalid setting ${settingName("embeddings.api_key")}: ${e.base_url} needs a key (or OPENAI_API_KEY)`);
  }
}

/** Configuration with every default, for tests and tools; `overrides` are merged one level deep. */
export function defaultConfig(overrides: Partial<ConfigInput> = {}): Config {
  const base = loadConfig({});
  const merged: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    const cur = (base as Record<string, unknown>)[k];
    merged[k] = v && typeof v === "object" && !Array.isArray(v) && cur && typeof cur === "object" ? { ...cur, ...v } : v;
  }
  // A chain given here is the caller's, not the one loadConfig explained.
  if (overrides.providers?.chain) merged.providers = { ...(merged.providers as object), chain_reason: "set by the caller" };
  return Config.parse(merged);
}
