// Types shared inside lib/providers. Adapters map their transport's errors and responses
// into these shapes before they leave their file.
import type { Clock, Logger, Provider, CompletionOptions, Completion } from "../context/types";
import type { Message } from "../schemas";

/** Whether a failed call may succeed if tried again. */
export type FailureKind = "retryable" | "final";

/** What went wrong, in words a status page can show. */
export type FailureReason =
  | "rate_limited"
  | "server_error"
  | "timeout"
  | "connection"
  | "malformed"
  | "client_error"
  | "auth"
  | "not_found"
  | "deadline"
  | "aborted";

/** A provider call that failed, classified once at the adapter boundary. */
export interface FailureInfo {
  kind: FailureKind;
  reason: FailureReason;
  /** HTTP status when the server answered. */
  status?: number;
  /** Server-requested wait before the next attempt (Retry-After / retry-after-ms), in ms. */
  retry_after_ms?: number;
  /** Human text, already scrubbed of secrets. */
  message: string;
}

/**
 * A Provider that also accepts an absolute deadline (performance.now() milliseconds), so its
 * retry loop never sleeps into time the caller no longer has. The 4th argument is optional:
 * any Provider still satisfies the Providers registry.
 */
export interface DeadlineProvider extends Provider {
  complete(messages: Message[], options: CompletionOptions, signal?: AbortSignal, deadline?: number): Promise<Completion>;
}

/** Backoff tuning; defaults suit real servers, tests shrink them. */
export interface BackoffOptions {
  /** First retry waits up to this long (full jitter: uniform in [0, base]). */
  base_ms: number;
  /** Upper bound of one backoff sleep (not of a server's Retry-After). */
  max_ms: number;
}

/** What createProviders needs from its host. */
export interface ProvidersDeps {
  log: Logger;
  /** Drives health cooldowns; deadlines and sleeps use real monotonic time. */
  clock: Clock;
  /** Replaces the keep-alive transport of OpenAI-compatible providers (a proxy's fetch, a test's spy). */
  fetch?: typeof fetch;
  backoff?: Partial<BackoffOptions>;
  /** Source of jitter in [0, 1); injectable so tests can pin it. */
  random?: () => number;
}
