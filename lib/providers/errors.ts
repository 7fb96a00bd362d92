// Failure classification: one pure table from "what happened" to retryable or final, plus
// the Retry-After parser, the short form replies show and the secret scrubber every logged
// failure message passes through.
import type { FailureInfo, FailureKind, FailureReason } from "./types";

/** A provider failure as plain facts, before classification. */
export interface FailureInput {
  /** HTTP status when the server answered with an error. */
  status?: number;
  /** Response headers of that answer (for Retry-After). */
  headers?: { get(name: string): string | null } | null;
  /** The attempt ran out of its own time budget (timeout_ms). */
  timeout?: boolean;
  /** The request never got an HTTP answer: refused, reset, DNS. */
  connection?: boolean;
  /** The server answered 2xx with a body that is not a chat completion. */
  malformed?: boolean;
  /** The server reported an error inside a streamed reply (an `error` event after a 200). */
  streamError?: boolean;
  /** The call was cut short from outside: the request deadline or the caller's signal. */
  aborted?: "deadline" | "caller";
  /** The request could not even be built or sent as given (a local, final problem). */
  unsendable?: boolean;
  /** Text describing the failure (scrubbed later). */
  message?: string;
}

/** Statuses worth another attempt: overload, rate limits, server faults, request timeouts. */
export function statusKind(status: number): FailureKind {
  if (status === 408 || status === 409 || status === 425 || status === 429) return "retryable";
  return status >= 500 ? "retryable" : "final";
}

function statusReason(status: number): FailureReason {
  if (status === 429) return "rate_limited";
  if (status >= 500) return "server_error";
  if (status === 408) return "timeout";
  if (status === 401 || status === 403) return "auth";
  if (status === 404) return "not_found";
  return "client_error";
}

/**
 * Milliseconds a server asked us to wait: `retry-after-ms` (OpenAI), else `Retry-After`
 * as seconds or an HTTP date. Undefined when absent or unreadable.
 */
export function parseRetryAfter(headers: FailureInput["headers"], nowMs: number = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "" && Number.isFinite(Number(ms)) && Number(ms) >= 0) return Number(ms);
  const value = headers.get("retry-after")?.trim();
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  // An HTTP date names its weekday or month; bare numbers like "-3" are not dates here.
  if (!/[A-Za-z]/.test(value)) return undefined;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** Classifies a failure: 429/5xx/timeouts/connection/malformed bodies retry, other 4xx and aborts are final. */
export function classifyFailure(input: FailureInput, nowMs: number = Date.now()): FailureInfo {
  const text = input.message ?? "";
  if (input.aborted) {
    const message = input.aborted === "deadline" ? "request deadline exceeded" : "request cancelled by the caller";
    return { kind: "final", reason: input.aborted === "deadline" ? "deadline" : "aborted", message };
  }
  if (input.status !== undefined) {
    const info: FailureInfo = {
      kind: statusKind(input.status),
      reason: statusReason(input.status),
      status: input.status,
      message: `HTTP ${input.status}${text ? `: ${text}` : ""}`,
    };
    const wait = parseRetryAfter(input.headers, nowMs);
    if (wait !== undefined) info.retry_after_ms = wait;
    return info;
  }
  if (input.unsendable) return { kind: "final", reason: "client_error", message: `request not sent${text ? `: ${text}` : ""}` };
  if (input.timeout) return { kind: "retryable", reason: "timeout", message: `timed out${text ? `: ${text}` : ""}` };
  if (input.streamError) return { kind: "retryable", reason: "server_error", message: `error event in the stream${text ? `: ${text}` : ""}` };
  if (input.malformed) return { kind: "retryable", reason: "malformed", message: `malformed response${text ? `: ${text}` : ""}` };
  // Anything else that never produced an HTTP answer is a transport problem worth retrying.
  return { kind: "retryable", reason: "connection", message: `connection failed${text ? `: ${text}` : ""}` };
}

/**
 * A failure as replies, events and `status` show it: the provider, the kind of failure and
 * the HTTP status — never the upstream text, which may echo the prompt, a header or a key.
 * That text goes to the logs only, through redactSecrets.
 */
export function shortFailure(provider: string, info: FailureInfo): string {
  return `${provider}: ${info.reason}${info.status !== undefined ? ` (HTTP ${info.status})` : ""}`;
}

/** Prefixed keys (OpenAI sk-/sk-proj-, rk-, pk-, sess-, OpenRouter sk-or-…) and JWTs. */
const KEY_LIKE = /\b(?:sk|rk|pk|sess)-[A-Za-z0-9_*.-]{6,}|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g;
/** Credentials in an Authorization header, in either scheme. */
const AUTH_SCHEME = /\b(Bearer|Basic|Token)\s+[^\s"',]+/gi;
/** A named secret: `api_key=…`, `"token": "…"`, `x-api-key: …`, `password=…`. The name stays. */
const NAMED = /\b((?:[\w-]*api[_-]?key|access[_-]?token|token|secret|password|passwd|authorization)["']?\s*[:=]\s*["']?)([^\s"',;&]+)/gi;
/** Long opaque runs of letters and digits (hex or base64 keys of unknown shape). */
const OPAQUE = /\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}\b/g;

/**
 * Removes secrets from text meant for logs: the given values (API keys, configured header
 * values) wherever they appear, and anything shaped like a key or a named credential.
 */
export function redactSecrets(text: string, secrets: ReadonlyArray<string | undefined> = []): string {
  let out = text;
  for (const s of secrets) {
    // Short values ("none", "x") would shred ordinary words; real keys are long.
    if (s && s.length >= 6) out = out.split(s).join("[redacted]");
  }
  return out
    .replace(KEY_LIKE, "[redacted]")
    .replace(AUTH_SCHEME, "$1 [redacted]")
    .replace(NAMED, "$1[redacted]")
    .replace(OPAQUE, "[redacted]");
}

/** A classified provider failure, thrown by adapters and caught by the registry. */
export class ProviderFailure extends Error {
  readonly info: FailureInfo;
  readonly provider: string;
  /** Attempts made before giving up (1 = no retry). */
  readonly attempts: number;

  constructor(provider: string, info: FailureInfo, attempts = 1) {
    super(`${provider}: ${info.message}${attempts > 1 ? ` (after ${attempts} attempts)` : ""}`);
    this.name = "ProviderFailure";
    this.info = info;
    this.provider = provider;
    this.attempts = attempts;
  }
}

/**
 * The failures of one server: what went wrong, classified, as a ProviderFailure named after
 * it, with its secrets (`scrub`) taken out of the message.
 */
export function failureOf(provider: string, scrub: (text: string) => string): (input: FailureInput) => ProviderFailure {
  return (input) => {
    const info = classifyFailure(input);
    return new ProviderFailure(provider, { ...info, message: scrub(info.message) });
  };
}

/** True for a ProviderFailure from any bundle's copy of this module. */
export function isProviderFailure(err: unknown): err is ProviderFailure {
  return err instanceof Error && err.name === "ProviderFailure" && "info" in err && "provider" in err;
}
