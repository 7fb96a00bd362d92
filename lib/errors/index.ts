// One error type and one code table. Every bundle carries its own copy of lib/, so errors
// are recognised by a registered symbol rather than by instanceof.
import type { ErrorCode } from "../schemas";

const MARK = Symbol.for("rosey.error");

/** The micro error headers every error reply carries: the message and the status below. */
export const ERROR_HEADERS = { message: "Nats-Service-Error", status: "Nats-Service-Error-Code" } as const;

/** What each contract error code means, for people reading the contract. */
export const MEANING = {
  validation: "The request is not valid JSON or does not match the endpoint's schema; the message names the field.",
  not_found: "The persona or memory named does not exist.",
  payload_too_large: "The request is larger than ROSEY_MAX_REQUEST_BYTES.",
  rate_limited: "A request limit (user per minute, hour or day; channel per hour) is reached; retry_after says when to retry.",
  quota_exceeded: "A token quota (the user's or the global daily budget) is spent; retry_after says when it renews.",
  provider_error: "A provider refused the request in a way retrying will not fix (its key, the request itself).",
  provider_unavailable: "No provider of the chain (or the one forced) answered: down, cooling down or out of time.",
  storage_full:
    "A bucket reached its size limit (or JetStream its storage, or the defined personas their count limit) and refused a new key; the message names the setting to raise. Nothing was changed.",
  internal: "Anything else, a handler timeout included; the message hides details, the service log has them.",
} as const satisfies Record<ErrorCode, string>;

/** Micro error header status for each contract error code. */
export const STATUS = {
  validation: 400,
  not_found: 404,
  payload_too_large: 413,
  rate_limited: 429,
  quota_exceeded: 429,
  provider_error: 502,
  provider_unavailable: 503,
  storage_full: 507,
  internal: 500,
} as const satisfies Record<ErrorCode, number>;

export interface RoseyErrorOptions {
  retry_after?: number;
  provider?: string;
  cause?: unknown;
}

/** An error meant for the caller: its message is shown as is, its code chosen from the contract. */
export class RoseyError extends Error {
  readonly [MARK] = true;
  readonly code: ErrorCode;
  readonly retry_after?: number;
  readonly provider?: string;

  constructor(code: ErrorCode, message: string, opts: RoseyErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "RoseyError";
    this.code = code;
    if (opts.retry_after !== undefined) this.retry_after = opts.retry_after;
    if (opts.provider !== undefined) this.provider = opts.provider;
  }
}

/** True for a RoseyError from any bundle's copy of this module. */
export function isRoseyError(err: unknown): err is RoseyError {
  return typeof err === "object" && err !== null && (err as Record<symbol, unknown>)[MARK] === true;
}

export interface ErrorReply {
  success: false;
  error: string;
  error_code: ErrorCode;
  retry_after?: number;
}

/** The reply body for any thrown value; unknown errors become `internal` without leaking their text. */
export function toErrorReply(err: unknown): ErrorReply {
  if (isRoseyError(err)) {
    const reply: ErrorReply = { success: false, error: err.message, error_code: err.code };
    if (err.retry_after !== undefined) reply.retry_after = err.retry_after;
    return reply;
  }
  return { success: false, error: "Internal error", error_code: "internal" };
}

export const notFound = (what: string) => new RoseyError("not_found", what);
export const invalid = (message: string) => new RoseyError("validation", message);
