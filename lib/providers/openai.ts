// An OpenAI-compatible provider (OpenAI, OpenRouter, Ollama, vLLM, llama.cpp, LM Studio)
// through the openai SDK. The SDK's own retries are off: this file retries with full-jitter
// backoff, honours Retry-After, and never sleeps or waits past the request deadline. No SDK
// type leaves this file; failures leave as ProviderFailure, answers as Completion.
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, OpenAIError } from "openai";
import type { ProviderConfig } from "../config";
import type { Completion, CompletionOptions, Logger } from "../context/types";
import type { Message } from "../schemas";
import { classifyFailure, isProviderFailure, ProviderFailure, redactSecrets, type FailureInput } from "./errors";
import { backoffDelay, DEFAULT_BACKOFF, isDeadlineReason, sleep } from "./retry";
import { estimateMessagesTokens, estimateTokens } from "./tokens";
import type { BackoffOptions, DeadlineProvider, FailureInfo } from "./types";

/** Where the SDK sends requests when a provider names no base URL. */
const OPENAI_BASE_URL = "https://api.openai.com/v1";

/** Everything an OpenAI-compatible provider is built from. */
export interface OpenAIProviderOptions {
  name: string;
  def: ProviderConfig;
  /** Budget of a call when the caller passes no deadline (config.providers.deadline_ms). */
  deadline_ms: number;
  log: Logger;
  fetch?: typeof fetch;
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
type CutShort = "timeout" | "deadline" | "caller" | undefined;

/** Turns whatever the SDK threw into plain facts for classifyFailure. */
function describeError(err: unknown, cut: CutShort): FailureInput {
  if (cut === "timeout") return { timeout: true };
  if (cut === "deadline" || cut === "caller") return { aborted: cut };
  if (err instanceof APIConnectionTimeoutError) return { timeout: true };
  if (err instanceof APIConnectionError) {
    const cause = (err as { cause?: { code?: unknown; message?: unknown; cause?: { code?: unknown } } }).cause;
    const code = cause?.cause?.code ?? cause?.code;
    return { connection: true, message: typeof code === "string" ? code : String(cause?.message ?? err.message) };
  }
  if (err instanceof APIError && typeof err.status === "number") {
    const detail = (err.error as { message?: unknown } | undefined)?.message;
    return { status: err.status, headers: err.headers ?? null, message: typeof detail === "string" ? detail : err.message };
  }
  // The SDK parses a JSON content-type with response.json(): a broken body surfaces as SyntaxError.
  if (err instanceof SyntaxError) return { malformed: true, message: "body is not valid JSON" };
  // The SDK refusing its own input (before any request) will not get better on a retry.
  if (err instanceof OpenAIError) return { unsendable: true, message: err.message };
  return { connection: true, message: err instanceof Error ? err.message : String(err) };
}

/** Builds an OpenAI-compatible provider from its config entry. */
export function createOpenAIProvider(opts: OpenAIProviderOptions): DeadlineProvider {
  const { name, def, log } = opts;
  const backoff = opts.backoff ?? DEFAULT_BACKOFF;
  const random = opts.random ?? Math.random;
  const scrub = (text: string) => redactSecrets(text, [def.api_key]);
  // Every option the SDK would otherwise read from process.env is given explicitly.
  const client = new OpenAI({
    apiKey: def.api_key ?? "none",
    baseURL: def.base_url ?? OPENAI_BASE_URL,
    organization: null,
    project: null,
    webhookSecret: null,
    timeout: def.timeout_ms,
    maxRetries: 0,
    defaultHeaders: def.headers,
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });

  /** One HTTP attempt bounded by `budget` ms and the outer signal. */
  async function attempt(messages: Message[], options: CompletionOptions, budget: number, timeoutIsDeadline: boolean, outer?: AbortSignal) {
    const ctl = new AbortController();
    let cut: CutShort;
    // Our own timer covers the whole attempt including reading the body; the SDK's timeout
    // stops at the response headers, so a server that stalls mid-body would escape it.
    const timer = setTimeout(() => {
      cut = timeoutIsDeadline ? "deadline" : "timeout";
      ctl.abort();
    }, budget);
    const onOuter = () => {
      cut = isDeadlineReason(outer?.reason) ? "deadline" : "caller";
      ctl.abort();
    };
    if (outer?.aborted) onOuter();
    else outer?.addEventListener("abort", onOuter, { once: true });
    try {
      const body: unknown = await client.chat.completions.create(
        {
          model: def.model,
          messages,
          ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
          ...(options.max_tokens !== undefined ? { max_tokens: options.max_tokens } : {}),
        },
        { signal: ctl.signal, timeout: Math.max(1, Math.ceil(budget)), maxRetries: 0 },
      );
      const mapped = mapChatResponse(body, messages, name, def.model);
      if (!mapped) throw new ProviderFailure(name, classifyFailure({ malformed: true, message: "no choices[0].message" }));
      return mapped;
    } catch (err) {
      if (isProviderFailure(err)) throw err;
      const info = classifyFailure(describeError(err, cut));
      throw new ProviderFailure(name, { ...info, message: scrub(info.message) });
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onOuter);
    }
  }

  return {
    name,
    model: def.model,
    async complete(messages, options, signal, deadline) {
      const started = performance.now();
      const outer = signal ?? options.signal;
      const deadlineAt = deadline ?? started + opts.deadline_ms;
      let last: FailureInfo | undefined;
      for (let n = 0; n <= def.max_retries; n++) {
        const remaining = deadlineAt - performance.now();
        if (remaining <= 0) throw new ProviderFailure(name, deadlineInfo(last), n);
        const budget = Math.min(def.timeout_ms, remaining);
        try {
          const done = await attempt(messages, options, budget, budget < def.timeout_ms, outer);
          return { ...done, latency_ms: performance.now() - started };
        } catch (err) {
          const info = (err as ProviderFailure).info;
          last = info;
          if (info.kind === "final" || n === def.max_retries) throw new ProviderFailure(name, info, n + 1);
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
