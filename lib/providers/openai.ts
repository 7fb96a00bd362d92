// An OpenAI-compatible provider (OpenAI, OpenRouter, Ollama, vLLM, llama.cpp, LM Studio):
// POST /chat/completions through a keep-alive transport (./http.ts), streamed when the
// caller passes onDelta (./chat-stream.ts). This file retries with full-jitter backoff,
// honours Retry-After, never sleeps or waits past the request deadline, and never retries
// once a piece of a streamed reply went out. Failures leave as ProviderFailure, answers as
// Completion.
import type { ProviderConfig } from "../config";
import type { Completion, CompletionOptions, Logger } from "../context/types";
import type { Message } from "../schemas";
import { readChatStream, StreamFailure } from "./chat-stream";
import { classifyFailure, failureOf, ProviderFailure, redactSecrets, type FailureInput } from "./errors";
import { createTransport, type HttpPost, type HttpReply, type Transport } from "./http";
import { backoffDelay, DEFAULT_BACKOFF, isDeadlineReason, sleep } from "./retry";
import { estimateMessagesTokens, estimateTokens } from "./tokens";
import type { BackoffOptions, DeadlineProvider, FailureInfo } from "./types";

/** Where requests go when a provider names no base URL. */
const OPENAI_BASE_URL = "https://api.openai.com/v1";
/** How the service names itself to model servers. */
const USER_AGENT = "rosey-llm";

/** Everything an OpenAI-compatible provider is built from. */
export interface OpenAIProviderOptions {
  name: string;
  def: ProviderConfig;
  /** Budget of a call when the caller passes no deadline (config.providers.deadline_ms). */
  deadline_ms: number;
  log: Logger;
  /** Replaces the built-in keep-alive transport (a proxy's fetch, a test's spy). */
  fetch?: Transport;
  backoff?: BackoffOptions;
  random?: () => number;
}

/** The parts of a chat-completions body this adapter reads; everything else is ignored. */
interface ChatBody {
  model?: unknown;
  choices?: Array<{ message?: { content?: unknown; refusal?: unknown } | null; finish_reason?: unknown }>;
  usage?: { prompt_tokens?: unknown; completion_tokens?: unknown; total_tokens?: unknown } | null;
}

const isCount = (n: unknown): n is number => typeof n === "number" && Number.isFinite(n) && n >= 0;

/**
 * Maps a chat-completions body to a Completion (latency filled in by the caller). Tokens come
 * from the usage block when it has both counts, else from the estimate. Returns null for a
 * body that is not a chat completion (treated as malformed, hence retryable).
 */
export function mapChatResponse(body: unknown, messages: Message[], provider: string, fallbackModel: string): Omit<Completion, "latency_ms"> | null {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return null;
  const b = body as ChatBody;
  const choice = Array.isArray(b.choices) ? b.choices[0] : undefined;
  if (!choice || typeof choice !== "object" || typeof choice.message !== "object" || choice.message === null) return null;
  const raw = choice.message.content ?? choice.message.refusal ?? "";
  if (typeof raw !== "string") return null;
  const content = raw;
  const u = b.usage;
  const reported = !!u && isCount(u.prompt_tokens) && isCount(u.completion_tokens);
  const prompt = reported ? (u!.prompt_tokens as number) : estimateMessagesTokens(messages);
  const completion = reported ? (u!.completion_tokens as number) : estimateTokens(content);
  const total = reported && isCount(u!.total_tokens) ? (u!.total_tokens as number) : prompt + completion;
  return {
    content,
    tokens: { prompt, completion, total },
    tokens_reported: reported,
    provider,
    model: typeof b.model === "string" && b.model ? b.model : fallbackModel,
    finish_reason: typeof choice.finish_reason === "string" ? choice.finish_reason : "stop",
  };
}

/** Why an attempt was cut short by us, if it was. */
export type CutShort = "timeout" | "deadline" | "caller" | undefined;

/** Turns whatever the transport threw into plain facts for classifyFailure. */
function describeError(err: unknown, cut: CutShort): FailureInput {
  if (cut === "timeout") return { timeout: true };
  if (cut === "deadline" || cut === "caller") return { aborted: cut };
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown } } | null;
  const code = typeof e?.code === "string" ? e.code : typeof e?.cause?.code === "string" ? e.cause.code : undefined;
  // node refuses a request it cannot write (a header value with a line break, a bad URL)
  // before sending anything: that will not get better on a retry.
  if (code?.startsWith("ERR_INVALID") || code?.startsWith("ERR_HTTP")) return { unsendable: true, message: String(e?.message ?? code) };
  // A refused, reset or unresolvable connection (node's code, or the cause of fetch's "fetch failed").
  return { connection: true, message: code ?? (err instanceof Error ? err.message : String(err)) };
}

/** The error text of an OpenAI-style error body ({"error": {"message": …}}), else the start of the body. */
function errorDetail(text: string): string {
  try {
    const detail = (JSON.parse(text) as { error?: { message?: unknown } } | null)?.error?.message;
    if (typeof detail === "string") return detail;
  } catch {
    /* not JSON: the text itself */
  }
  return text.trim().slice(0, 200);
}

/** True for a reply sent as server-sent events. */
const isEventStream = (res: HttpReply) => (res.headers.get("content-type") ?? "").toLowerCase().includes("text/event-stream");

/**
 * The headers of every request to a server: JSON both ways, the key, and the configured
 * headers (OpenRouter's attribution, a proxy's) last.
 */
export function requestHeaders(apiKey: string | undefined, configured: Record<string, string>): Record<string, string> {
  return {
    "content-type": "application/json",
    accept: "application/json",
    "user-agent": USER_AGENT,
    ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
    ...configured,
  };
}

/**
 * Sends one POST and returns the answer, its body read whole (`text`) unless `leave(res)`
 * says the caller reads it as it arrives. What goes wrong leaves as the failure `fail` makes
 * of it: the transport's error (cut short as `cut()` says, if it was), a status other than
 * 2xx with the error text of its body.
 */
async function post(
  transport: Transport,
  url: string,
  init: HttpPost,
  cut: () => CutShort,
  fail: (input: FailureInput) => ProviderFailure,
  leave: (res: HttpReply) => boolean = () => false,
): Promise<{ res: HttpReply; text?: string }> {
  let res: HttpReply;
  let text: string | undefined;
  try {
    res = await transport(url, init);
    if (res.status < 200 || res.status > 299 || !leave(res)) text = await res.text();
  } catch (err) {
    throw fail(describeError(err, cut()));
  }
  if (res.status < 200 || res.status > 299) throw fail({ status: res.status, headers: res.headers, message: errorDetail(text ?? "") });
  return { res, text };
}

/** A body parsed as JSON, or the malformed failure `fail` makes. */
function parseJson(text: string, fail: (input: FailureInput) => ProviderFailure): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw fail({ malformed: true, message: "body is not valid JSON" });
  }
}

/**
 * Sends one POST and returns its body parsed as JSON. What goes wrong leaves as the failure
 * `fail` makes of it: the transport's error (cut short as `cut()` says, if it was), a status
 * other than 2xx with the error text of its body, a body that is not JSON.
 */
export async function postJson(
  transport: Transport,
  url: string,
  init: HttpPost,
  cut: () => CutShort,
  fail: (input: FailureInput) => ProviderFailure,
): Promise<unknown> {
  return parseJson((await post(transport, url, init, cut, fail)).text!, fail);
}

/** Builds an OpenAI-compatible provider from its config entry. */
export function createOpenAIProvider(opts: OpenAIProviderOptions): DeadlineProvider {
  const { name, def, log } = opts;
  const backoff = opts.backoff ?? DEFAULT_BACKOFF;
  const random = opts.random ?? Math.random;
  const fail = failureOf(name, (text) => redactSecrets(text, [def.api_key]));
  const transport: Transport = opts.fetch ?? createTransport();
  const url = `${(def.base_url ?? OPENAI_BASE_URL).replace(/\/+$/, "")}/chat/completions`;
  const headers = requestHeaders(def.api_key, def.headers);

  /** One HTTP attempt bounded by timeout_ms, the deadline (performance.now() ms) and the outer signal. */
  async function attempt(messages: Message[], options: CompletionOptions, deadlineAt: number, outer?: AbortSignal) {
    const ctl = new AbortController();
    let cut: CutShort;
    // One timer covers the whole attempt, reading the body included: a server that sends
    // its headers and then stalls is cut off like one that never answers. A streamed reply
    // restarts it with each piece (a stream is stalled, not long, when it runs out), still
    // never past the deadline.
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      const budget = Math.min(def.timeout_ms, deadlineAt - performance.now());
      clearTimeout(timer);
      timer = setTimeout(() => {
        cut = budget < def.timeout_ms ? "deadline" : "timeout";
        ctl.abort();
      }, budget);
    };
    arm();
    const onOuter = () => {
      cut = isDeadlineReason(outer?.reason) ? "deadline" : "caller";
      ctl.abort();
    };
    if (outer?.aborted) onOuter();
    else outer?.addEventListener("abort", onOuter, { once: true });
    try {
      const given = options.onDelta;
      const stream = given && ((d: string) => (arm(), given(d)));
      const body = JSON.stringify({
        model: def.model,
        messages,
        ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
        ...(options.max_tokens !== undefined ? { max_tokens: options.max_tokens } : {}),
        // The usage block comes in a last chunk; a server that sends none leaves the estimate.
        ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
      });
      const init = { method: "POST" as const, headers, body, signal: ctl.signal };
      // An event stream is read as it arrives; anything else (an error, a server that
      // answered in one piece) whole.
      const { res, text } = await post(transport, url, init, () => cut, fail, (r) => !!(stream && r.body && isEventStream(r)));
      let parsed: unknown;
      if (text !== undefined) parsed = parseJson(text, fail);
      else {
        try {
          parsed = await readChatStream(res.body!, stream!);
        } catch (err) {
          throw fail(!cut && err instanceof StreamFailure ? err.input : describeError(err, cut));
        }
      }
      const mapped = mapChatResponse(parsed, messages, name, def.model);
      if (!mapped) throw fail({ malformed: true, message: "no choices[0].message" });
      // A server that ignored `stream` answered in one piece: that piece is the whole stream.
      if (stream && text !== undefined && mapped.content) stream(mapped.content);
      return mapped;
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onOuter);
    }
  }

  return {
    name,
    model: def.model,
    async complete(messages, given, signal, deadline) {
      const started = performance.now();
      // Once a piece of a streamed reply went out, a retry would send the reply again.
      let sent = false;
      const options = given.onDelta ? { ...given, onDelta: (d: string) => ((sent = true), given.onDelta!(d)) } : given;
      const outer = signal ?? options.signal;
      const deadlineAt = deadline ?? started + opts.deadline_ms;
      let last: FailureInfo | undefined;
      for (let n = 0; n <= def.max_retries; n++) {
        if (deadlineAt <= performance.now()) throw new ProviderFailure(name, deadlineInfo(last), n);
        try {
          const done = await attempt(messages, options, deadlineAt, outer);
          return { ...done, latency_ms: performance.now() - started };
        } catch (err) {
          const info = (err as ProviderFailure).info;
          last = info;
          if (info.kind === "final" || n === def.max_retries || sent) throw new ProviderFailure(name, info, n + 1);
          const wait = info.retry_after_ms ?? backoffDelay(n, backoff, random);
          // Waiting past the deadline only to fail then helps no one: give up now and let
          // the registry try the next provider while the caller still has time.
          if (performance.now() + wait >= deadlineAt) {
            const why = info.retry_after_ms !== undefined ? `server asked to retry in ${Math.ceil(wait / 1000)} s` : "no time left to retry";
            throw new ProviderFailure(name, { ...info, message: `${info.message}; ${why} before the deadline` }, n + 1);
          }
          log.debug("provider retry", { provider: name, attempt: n + 1, reason: info.reason, status: info.status, wait_ms: wait });
          try {
            await sleep(wait, outer);
          } catch {
            const cut = classifyFailure({ aborted: isDeadlineReason(outer?.reason) ? "deadline" : "caller" });
            throw new ProviderFailure(name, { ...cut, message: `${cut.message} (last error: ${info.message})` }, n + 1);
          }
        }
      }
      /* c8 ignore next */
      throw new ProviderFailure(name, last ?? classifyFailure({ aborted: "deadline" }));
    },
  };
}

function deadlineInfo(last: FailureInfo | undefined): FailureInfo {
  const info = classifyFailure({ aborted: "deadline" });
  return last ? { ...info, message: `${info.message} (last error: ${last.message})` } : info;
}
