// The embeddings provider: texts to unit vectors through an OpenAI-compatible POST
// `<base_url>/embeddings` ({model, input: [...]} → data[i].embedding), for recall by meaning
// (lib/memory/vectors.ts). Works with OpenAI, Ollama (nomic-embed-text) and vLLM. Off unless
// config.embeddings names a model.
//
// One attempt per call, never a retry: a query waits at most query_timeout_ms, a memory
// timeout_ms, and whatever fails leaves recall lexical. Failures are classified and scrubbed
// as chat providers' are (errors.ts). A breaker (health.ts) skips the server for the providers'
// cooldown after a failure that says it is down or unusable, so a dead server costs one
// timeout per cooldown rather than one per chat, and is logged once per burst of failures.
import type { Config } from "../config";
import type { Clock, Logger } from "../context/types";
import type { ProviderStatus } from "../schemas";
import { failureOf, isProviderFailure, ProviderFailure, redactSecrets, shortFailure } from "./errors";
import { Health, providerStatus } from "./health";
import { createTransport, type Transport } from "./http";
import { postJson, requestHeaders, type CutShort } from "./openai";
import { PROVIDER_WIDE } from "./registry";

/** What a text is embedded for: each has its own time budget and prefix. */
export type EmbeddingPurpose = "query" | "document";

export interface Embedder {
  /**
   * Names the vectors: the model, with `@<dimensions>` when fewer were asked for. Vectors
   * named otherwise are never compared with these (and are embedded again).
   */
  readonly model: string;
  /** False while the server is skipped after a failure. */
  available(): boolean;
  /** Its entry in status (named "embeddings"). */
  status(): ProviderStatus;
  /** Unit vectors of the texts, in order. Throws a ProviderFailure. */
  embed(texts: string[], purpose: EmbeddingPurpose): Promise<Float32Array[]>;
}

export interface EmbedderDeps {
  log: Logger;
  clock: Clock;
  /** Replaces the keep-alive transport (a test's spy); `typeof fetch` is one. */
  fetch?: Transport;
}

/** Names the embeddings server in failures and logs. */
const NAME = "embeddings";

/** True for a failure that refused the texts sent (too long, say) rather than said the server is down or unusable. */
export function refusedText(err: unknown): boolean {
  return isProviderFailure(err) && err.info.kind === "final" && !PROVIDER_WIDE.has(err.info.reason);
}

/** The vector scaled to length 1, or null when it is empty or holds anything but finite numbers. */
export function unitVector(values: unknown): Float32Array | null {
  if (!Array.isArray(values) || values.length === 0) return null;
  const v = new Float32Array(values.length);
  let norm = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (typeof x !== "number" || !Number.isFinite(x)) return null;
    v[i] = x;
    norm += x * x;
  }
  if (!(norm > 0) || !Number.isFinite(norm)) return null;
  const scale = 1 / Math.sqrt(norm);
  for (let i = 0; i < v.length; i++) v[i] *= scale;
  return v;
}

/** The vectors of an embeddings body for `n` inputs, in input order; null for any other body. */
export function mapEmbeddings(body: unknown, n: number): Float32Array[] | null {
  const data = (body as { data?: unknown } | null)?.data;
  if (!Array.isArray(data) || data.length !== n) return null;
  const out: Array<Float32Array | undefined> = new Array(n);
  for (let i = 0; i < n; i++) {
    const item = data[i] as { index?: unknown; embedding?: unknown } | null;
    // Servers say which input a vector belongs to; one that does not answers in order.
    const at = typeof item?.index === "number" ? item.index : i;
    const v = unitVector(item?.embedding);
    if (!v || !Number.isInteger(at) || at < 0 || at >= n || out[at] || v.length !== (out[0] ?? v).length) return null;
    out[at] = v;
  }
  return out as Float32Array[];
}

/** The embeddings provider of the configuration, or undefined when embeddings are off. */
export function createEmbedder(config: Config, deps: EmbedderDeps): Embedder | undefined {
  const e = config.embeddings;
  if (e.model === undefined) return undefined;
  const model = e.model;
  const named = e.dimensions ? `${model}@${e.dimensions}` : model;
  const log = deps.log.child({ component: NAME });
  const transport = deps.fetch ?? createTransport();
  const url = `${e.base_url.replace(/\/+$/, "")}/embeddings`;
  const headers = requestHeaders(e.api_key, e.headers);
  const scrub = (text: string) => redactSecrets(text, [e.api_key, ...Object.values(e.headers)]);
  const health = new Health(1, config.providers.cooldown_ms, deps.clock);
  const budget = { query: e.query_timeout_ms, document: e.timeout_ms };
  const prefix = { query: e.query_prefix, document: e.document_prefix };
  log.info("embeddings on", { model, base_url: e.base_url });

  const fail = failureOf(NAME, scrub);

  /** One request within the purpose's budget. */
  async function request(texts: string[], purpose: EmbeddingPurpose): Promise<Float32Array[]> {
    const ctl = new AbortController();
    let cut: CutShort;
    const timer = setTimeout(() => {
      cut = "timeout";
      ctl.abort();
    }, budget[purpose]);
    try {
      const body = JSON.stringify({ model, input: texts.map((t) => prefix[purpose] + t), ...(e.dimensions ? { dimensions: e.dimensions } : {}) });
      const parsed = await postJson(transport, url, { method: "POST", headers, body, signal: ctl.signal }, () => cut, fail);
      const vectors = mapEmbeddings(parsed, texts.length);
      if (!vectors) throw fail({ malformed: true, message: "no data[i].embedding for every input" });
      return vectors;
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    model: named,
    available: () => health.available(),
    status: () => providerStatus(NAME, named, health.snapshot()),
    async embed(texts, purpose) {
      if (texts.length === 0) return [];
      if (!health.acquire()) throw fail({ connection: true, message: "skipped after a recent failure" });
      const wasUp = health.state() === "closed";
      try {
        const vectors = await request(texts, purpose);
        health.success();
        if (!wasUp) log.info("embeddings answering again");
        return vectors;
      } catch (err) {
        const { info } = err as ProviderFailure;
        const fields = { reason: info.reason, status: info.status, error: info.message };
        if (refusedText(err)) {
          // This text was refused (too long, say), not the server down: other texts still go.
          health.neutral();
          log.warn("embeddings: the server refused a text; it is recalled by its words only", fields);
        } else {
          health.failure(shortFailure(NAME, info));
          // Once per burst: probes that fail again while it is down are not news.
          if (wasUp) log.warn("embeddings failing; recall is by words only until they answer again", { ...fields, retry_in_ms: config.providers.cooldown_ms });
        }
        throw err;
      }
    },
  };
}
