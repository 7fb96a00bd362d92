// Turns one handler bundle into a NATS micro endpoint callback. This is where every request
// is decoded, size-checked, validated with the bundle's zod schema, timed and answered —
// and where every throw, rejection and hang becomes a clean error reply, so a caller always
// gets an answer and the process never sees an unhandled rejection. A request with
// `stream: true` also gets a reply stream (./stream.ts) in its context, open until its
// reply; the caller's lost interest aborts the request like its deadline does.
import type { Ctx, ReplyStream } from "../lib/context";
import { RoseyError, STATUS, toErrorReply, type ErrorReply } from "../lib/errors";
import { describeIssues } from "../lib/schemas/issues";
import type { EndpointName } from "../lib/subjects";
import type { z } from "zod";
import type { OpenStream } from "./stream";

/** What a handler bundle exports (see handlers/status.ts). */
export interface HandlerModule {
  name: EndpointName;
  request: z.ZodType;
  response: z.ZodType;
  /** What each chunk of a streamed reply carries, for an endpoint that streams (chat, complete). */
  chunk?: z.ZodType;
  handle(req: unknown, ctx: Ctx): Promise<unknown>;
}

/** The request as the endpoint sees it: bytes in, one reply out with optional headers. */
export interface Request {
  data: Uint8Array;
  reply(body: Uint8Array, error?: { code: number; description: string }): void;
  /** Opens a stream of chunks to the caller, ahead of the reply; absent when there is nowhere to stream to. */
  openStream?(): OpenStream | undefined;
}

/** Truthful per-endpoint statistics: whole async handler time, every error counted. */
export interface EndpointStats {
  num_requests: number;
  num_errors: number;
  /** Nanoseconds spent from receipt to reply, summed. */
  processing_time: number;
  average_processing_time: number;
  last_error: string;
  errors_by_code: Partial<Record<string, number>>;
}

export const newStats = (): EndpointStats => ({
  num_requests: 0,
  num_errors: 0,
  processing_time: 0,
  average_processing_time: 0,
  last_error: "",
  errors_by_code: {},
});

export interface EndpointOptions {
  maxRequestBytes: number;
  timeoutMs: number;
  /** Called for an error reply, to log and to publish a validation error event. */
  onError?: (name: string, reply: ErrorReply, err: unknown, input: unknown) => void;
  /** Tracks in-flight work so a drain can wait for it. */
  track?: (p: Promise<void>) => void;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** Parses a request body; an empty body is an empty object (`nats req rosey.llm.status ""`). */
function decode(data: Uint8Array): unknown {
  if (data.length === 0) return {};
  let text: string;
  try {
    text = dec.decode(data);
  } catch {
    throw new RoseyError("validation", "request body is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new RoseyError("validation", "request body is not valid JSON");
  }
}

class TimeoutError extends RoseyError {
  constructor(ms: number) {
    super("internal", `request timed out after ${ms} ms`);
  }
}

/**
 * Builds the callback for one endpoint. `makeCtx(signal, stream)` gives the handler its context
 * with the request's abort signal (aborted at the deadline, or when a streamed request's
 * caller stops listening) and its reply stream.
 */
export function createEndpoint(mod: HandlerModule, makeCtx: (signal: AbortSignal, stream?: ReplyStream) => Ctx, opts: EndpointOptions) {
  const stats = newStats();

  const errorReply = (err: unknown, input: unknown): { body: ErrorReply; status: number } => {
    const body = toErrorReply(err);
    // Give the error the endpoint's response shape (e.g. chat's tokens_used: 0, memory's count: 0).
    const shaped = mod.response.safeParse(body);
    const reply = (shaped.success ? shaped.data : body) as ErrorReply;
    opts.onError?.(mod.name, body, err, input);
    return { body: reply, status: STATUS[body.error_code] };
  };

  async function run(req: Request): Promise<void> {
    const started = process.hrtime.bigint();
    let input: unknown;
    let out: { body: unknown; status?: number };
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let stream: OpenStream | undefined;
    try {
      if (req.data.length > opts.maxRequestBytes) {
        throw new RoseyError(
          "payload_too_large",
          `request is ${req.data.length} bytes; the limit is ${opts.maxRequestBytes}`,
        );
      }
      input = decode(req.data);
      const parsed = mod.request.safeParse(input);
      if (!parsed.success) throw new RoseyError("validation", `invalid request: ${describeIssues(mod.request, input, parsed.error.issues)}`);
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort(new TimeoutError(opts.timeoutMs));
          reject(new TimeoutError(opts.timeoutMs));
        }, opts.timeoutMs);
      });
      if ((parsed.data as { stream?: unknown } | null)?.stream === true) stream = req.openStream?.();
      const s = stream;
      s?.signal.addEventListener("abort", () => controller.abort(s.signal.reason), { once: true });
      const result = await Promise.race([mod.handle(parsed.data, makeCtx(controller.signal, stream)), deadline]);
      out = { body: result };
    } catch (err) {
      const e = errorReply(err, input);
      out = e;
    } finally {
      clearTimeout(timer);
      // Nothing more goes out ahead of the reply, even from a handler still running past its deadline.
      stream?.close();
    }

    let bytes: Uint8Array;
    try {
      bytes = enc.encode(JSON.stringify(out.body));
    } catch (err) {
      out = errorReply(err, input);
      bytes = enc.encode(JSON.stringify(out.body));
    }
    const failed = out.status !== undefined || (out.body as { success?: unknown })?.success === false;
    const elapsed = Number(process.hrtime.bigint() - started);
    stats.num_requests++;
    stats.processing_time += elapsed;
    stats.average_processing_time = Math.round(stats.processing_time / stats.num_requests);
    if (failed) {
      const b = out.body as ErrorReply;
      stats.num_errors++;
      stats.last_error = `${b.error_code ?? "error"}: ${b.error ?? ""}`.slice(0, 200);
      const code = b.error_code ?? "unknown";
      stats.errors_by_code[code] = (stats.errors_by_code[code] ?? 0) + 1;
    }
    const status = out.status ?? (failed ? STATUS[(out.body as ErrorReply).error_code ?? "internal"] : undefined);
    req.reply(bytes, status ? { code: status, description: (out.body as ErrorReply).error ?? "error" } : undefined);
  }

  return {
    stats,
    /** Handles one request; never throws, never rejects. */
    handle(req: Request): void {
      const p = run(req).catch((err) => {
        // Only reachable if replying itself failed (connection closed): nothing left to tell the caller.
        opts.onError?.(mod.name, toErrorReply(err), err, undefined);
      });
      opts.track?.(p);
    },
  };
}

/** True when a value looks like a handler bundle's exports. */
export function isHandlerModule(m: unknown): m is HandlerModule {
  const x = m as Partial<HandlerModule> | null;
  return (
    !!x &&
    typeof x.name === "string" &&
    typeof x.handle === "function" &&
    typeof (x.request as z.ZodType | undefined)?.safeParse === "function" &&
    typeof (x.response as z.ZodType | undefined)?.safeParse === "function"
  );
}

