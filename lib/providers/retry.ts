// Backoff arithmetic and an abortable sleep for the adapters' retry loops, so that backoff,
// Retry-After and the request deadline are decided in one place.
import type { BackoffOptions } from "./types";

/** Backoff used when a host gives no tuning. */
export const DEFAULT_BACKOFF: BackoffOptions = { base_ms: 250, max_ms: 8_000 };

/**
 * Exponential backoff with full jitter: uniform in [0, min(max, base·2^retry)). Full jitter
 * spreads the retries of many instances hit by the same outage instead of synchronising them.
 */
export function backoffDelay(retry: number, backoff: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.max_ms, backoff.base_ms * 2 ** retry);
  return Math.floor(random() * ceiling);
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * True when an abort reason means "out of time" rather than "cancelled". Only a plain
 * `controller.abort()` (reason: an AbortError) counts as a cancel; AbortSignal.timeout and
 * any host-specific reason (the runtime aborts with its own timeout error) mean a deadline.
 */
export function isDeadlineReason(reason: unknown): boolean {
  if (typeof reason !== "object" || reason === null) return true;
  return (reason as { name?: unknown }).name !== "AbortError";
}
