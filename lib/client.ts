// A typed client for plugins that call rosey-llm over NATS.
//
//   const llm = createClient(nc);
//   const r = await llm.chat({ channel: "#general", user: "alice", message: "hi" });
//   if (r.success) say(r.content);
//   else if (r.error_code === "rate_limited") later(r.retry_after);
//
// Methods never throw for anything that can go wrong with a request; they resolve to a value
// whose `success` says what happened, so one `if` handles every outcome:
//   - the service's reply, parsed with the endpoint's response schema (defaults filled in,
//     extra fields kept) — on failure it carries `error`, `error_code` (a contract code such
//     as `rate_limited`) and, where it applies, `retry_after` in seconds;
//   - a local `validation` failure, with the same shape and wording as the service's, when the
//     request does not match the schema (nothing is sent; `local: true`);
//   - a TransportFailure when no reply arrived (`timeout`, `no_responders`, `forbidden` — the
//     connection's permissions do not allow the subject —, `disconnected`) or
//     the reply was not the service's (`bad_reply`), marked `transport: true`. Its codes are
//     kept apart from the service's so a caller never mistakes "nobody answered" for "the model
//     is down": both may be worth a retry, but only the first says the service itself is missing.
//
// chatStream/completeStream stream the reply (`stream: true`): an async iterator of its pieces
// as the model writes them, ending with the same result chat()/complete() give:
//
//   for await (const part of llm.chatStream({ channel: "#general", user: "alice", message: "hi" })) {
//     if ("delta" in part) show(part.delta); // a piece of the reply
//     else if (part.success) done(part.content); // the final reply
//     else fail(part.error);
//   }
//
// Breaking out of the loop stops listening, and the service then cancels the model call.
//
// This file is for plugin authors; handlers never import it, so it may use the nats client.
import { createInbox, type JetStreamClient, type Msg, type NatsConnection, type Subscription } from "nats";
import { z } from "zod";
import { describeIssues } from "./schemas/issues";
import {
  ChatRequest,
  ChatResponse,
  CompleteRequest,
  ContextResetRequest,
  MemoryAddRequest,
  MemoryForgetRequest,
  MemoryRecallRequest,
  MemoryResponse,
  OkResponse,
  PersonaDefineRequest,
  PersonaDeleteRequest,
  PersonaGetRequest,
  PersonaListRequest,
  PersonaListResponse,
  PersonaResponse,
  PersonaSetRequest,
  StatusRequest,
  StatusResponse,
  STREAM_HEADER,
  StreamChunk,
  SummarizeRequest,
  SummaryResponse,
  UsageRequest,
  UsageResponse,
  type ErrorCode,
} from "./schemas";
import { endpointSubject, type EndpointName } from "./subjects";
import { EVENTS_STREAM } from "../runtime/provision";
import { parseSince, replayEvents, type ReplayedEvent } from "../runtime/replay";

/** Request and response schema of every endpoint: the single source of the client's types. */
export const API = {
  chat: { request: ChatRequest, response: ChatResponse },
  complete: { request: CompleteRequest, response: ChatResponse },
  summarize: { request: SummarizeRequest, response: SummaryResponse },
  memory_add: { request: MemoryAddRequest, response: MemoryResponse },
  memory_recall: { request: MemoryRecallRequest, response: MemoryResponse },
  memory_forget: { request: MemoryForgetRequest, response: MemoryResponse },
  context_reset: { request: ContextResetRequest, response: OkResponse },
  persona_get: { request: PersonaGetRequest, response: PersonaResponse },
  persona_set: { request: PersonaSetRequest, response: PersonaResponse },
  persona_list: { request: PersonaListRequest, response: PersonaListResponse },
  status: { request: StatusRequest, response: StatusResponse },
  usage: { request: UsageRequest, response: UsageResponse },
  persona_define: { request: PersonaDefineRequest, response: PersonaResponse },
  persona_delete: { request: PersonaDeleteRequest, response: PersonaResponse },
} as const satisfies Record<EndpointName, { request: z.ZodType; response: z.ZodType }>;

type Api = typeof API;

/** What a caller passes to an endpoint: the request schema's input (defaulted fields optional). */
export type RequestOf<E extends EndpointName> = z.input<Api[E]["request"]>;

/** The service's reply to an endpoint, parsed: defaults filled in, unknown extra fields kept. */
export type ReplyOf<E extends EndpointName> = z.output<Api[E]["response"]> & {
  /** True when the request was refused by the client's own validation and never sent. */
  local?: true;
};

/** Why a request got no usable reply from the service. */
export type TransportErrorCode = "timeout" | "no_responders" | "forbidden" | "disconnected" | "bad_reply";

/** No reply from the service (or one that is not the service's): nothing is known about the request's effect. */
export interface TransportFailure {
  success: false;
  transport: true;
  error: string;
  error_code: TransportErrorCode;
  /** Never set: present so `r.retry_after` and `r.local` read on any result without narrowing first. */
  retry_after?: undefined;
  local?: undefined;
}

/** Every outcome of one call: the service's reply, a local validation refusal, or a transport failure. */
export type Result<E extends EndpointName> = ReplyOf<E> | TransportFailure;

/** The endpoints that stream their replies. */
export type StreamingEndpoint = "chat" | "complete";

/** One item of a streamed call: a piece of the reply, or last, the result chat()/complete() would give. */
export type StreamPart<E extends StreamingEndpoint> = StreamChunk | Result<E>;

/** Every error code a result can carry: the contract's codes and the transport ones. */
export type ClientErrorCode = ErrorCode | TransportErrorCode;

/** Options of a client. */
export interface ClientOptions {
  /** First subject token of the service (ROSEY_SUBJECT_PREFIX); default `rosey`. */
  prefix?: string;
  /** How long to wait for a reply; default 30 s (the service's own handler timeout). */
  timeoutMs?: number;
  /** Check requests against the schema before sending; default true. */
  validate?: boolean;
}

/** Options of one call, overriding the client's. */
export interface CallOptions {
  timeoutMs?: number;
  validate?: boolean;
}

/** Options of `events()`: where to start and which events. */
export interface EventsOptions {
  /** Start at this time (default: the stream's beginning). */
  since?: Date;
  /** Start at this stream sequence instead of a time. */
  startSeq?: number;
  /** Event type: `response`, `error`, `memory`, `summarized`, `usage.threshold`; all when unset. */
  type?: string;
  /** Keep waiting for new events instead of stopping at the end of the stream. */
  follow?: boolean;
  signal?: AbortSignal;
}

/** The typed client returned by createClient. */
export interface RoseyLlmClient {
  /** Sends a request to any endpoint by name. */
  call<E extends EndpointName>(endpoint: E, req: RequestOf<E>, opts?: CallOptions): Promise<Result<E>>;
  /** A chat turn in a channel, with its persona, memory and history. */
  chat(req: RequestOf<"chat">, opts?: CallOptions): Promise<Result<"chat">>;
  /** A raw completion over a list of messages. */
  complete(req: RequestOf<"complete">, opts?: CallOptions): Promise<Result<"complete">>;
  /**
   * `call` with `stream: true`: the reply's pieces as they are written, then the result. The
   * timeout covers the whole stream. Breaking out of the loop cancels the model call.
   */
  stream<E extends StreamingEndpoint>(endpoint: E, req: RequestOf<E>, opts?: CallOptions): AsyncGenerator<StreamPart<E>, void>;
  /** A chat turn, streamed (see stream). */
  chatStream(req: RequestOf<"chat">, opts?: CallOptions): AsyncGenerator<StreamPart<"chat">, void>;
  /** A completion, streamed (see stream). */
  completeStream(req: RequestOf<"complete">, opts?: CallOptions): AsyncGenerator<StreamPart<"complete">, void>;
  /** A summary of a text, at most `max_length` words. */
  summarize(req: RequestOf<"summarize">, opts?: CallOptions): Promise<Result<"summarize">>;
  /** Stores a memory for a channel (or one of its users). */
  memoryAdd(req: RequestOf<"memory_add">, opts?: CallOptions): Promise<Result<"memory_add">>;
  /** The memories most relevant to a query. */
  memoryRecall(req: RequestOf<"memory_recall">, opts?: CallOptions): Promise<Result<"memory_recall">>;
  /** Forgets one memory by id, or all of a user's (admin subject). */
  memoryForget(req: RequestOf<"memory_forget">, opts?: CallOptions): Promise<Result<"memory_forget">>;
  /** Drops a channel's conversation history and summaries, keeping memories (admin subject). */
  contextReset(req: RequestOf<"context_reset">, opts?: CallOptions): Promise<Result<"context_reset">>;
  /** The persona a channel uses. */
  personaGet(req: RequestOf<"persona_get">, opts?: CallOptions): Promise<Result<"persona_get">>;
  /** Selects a channel's persona. */
  personaSet(req: RequestOf<"persona_set">, opts?: CallOptions): Promise<Result<"persona_set">>;
  /** Defines or updates a persona (admin subject). */
  personaDefine(req: RequestOf<"persona_define">, opts?: CallOptions): Promise<Result<"persona_define">>;
  /** Deletes a defined persona (admin subject). */
  personaDelete(req: RequestOf<"persona_delete">, opts?: CallOptions): Promise<Result<"persona_delete">>;
  /** One page of the personas, built-in and defined (`next_cursor` when more follow). */
  personaList(req?: RequestOf<"persona_list">, opts?: CallOptions): Promise<Result<"persona_list">>;
  /** Health, providers and today's totals of the instance that answers. */
  status(req?: RequestOf<"status">, opts?: CallOptions): Promise<Result<"status">>;
  /** Today's usage and remaining limits of a user or channel (global totals when neither). */
  usage(req?: RequestOf<"usage">, opts?: CallOptions): Promise<Result<"usage">>;
  /** Replays stored events from the ROSEY_LLM_EVENTS stream (needs a JetStream client of the same account). */
  events(js: JetStreamClient, opts?: EventsOptions): AsyncGenerator<ReplayedEvent>;
}

const enc = new TextEncoder();

/** True for a result that is a transport failure rather than a reply of the service. */
export function isTransportFailure(r: { success: boolean }): r is TransportFailure {
  return (r as Partial<TransportFailure>).transport === true;
}

/** Maps a nats request rejection to a transport failure. */
function transportFailure(err: unknown, subject: string, timeoutMs: number): TransportFailure {
  const code = (err as { code?: unknown })?.code;
  if (code === "503") {
    return { success: false, transport: true, error_code: "no_responders", error: `no rosey-llm instance listens on ${subject}` };
  }
  if (code === "PERMISSIONS_VIOLATION") {
    return { success: false, transport: true, error_code: "forbidden", error: `this connection may not publish to ${subject}` };
  }
  if (code === "TIMEOUT") {
    return { success: false, transport: true, error_code: "timeout", error: `no reply on ${subject} within ${timeoutMs} ms` };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { success: false, transport: true, error_code: "disconnected", error: `request on ${subject} failed: ${message}` };
}

/** A message's JSON body, or undefined when it is not JSON. */
function jsonOf(m: Msg): unknown {
  try {
    return m.json();
  } catch {
    return undefined;
  }
}

/**
 * Creates a client over an open connection; the caller keeps owning (and closing) `nc`.
 * Replies arrive on the connection's inbox: a plugin given its own inbox root by its
 * permissions connects with `inboxPrefix` (e.g. `connect({ …, inboxPrefix: "_INBOX_trivia" })`)
 * and every call of this client uses it.
 */
export function createClient(nc: NatsConnection, options: ClientOptions = {}): RoseyLlmClient {
  const prefix = options.prefix ?? "rosey";
  const defaultTimeout = options.timeoutMs ?? 30_000;
  const defaultValidate = options.validate ?? true;

  /** The local refusal of a request that does not match its schema, when validation is on. */
  function refusal<E extends EndpointName>(endpoint: E, req: unknown, opts: CallOptions): Result<E> | undefined {
    if (!(opts.validate ?? defaultValidate)) return undefined;
    const { request, response } = API[endpoint] as { request: z.ZodType; response: z.ZodType };
    const checked = request.safeParse(req);
    if (checked.success) return undefined;
    // Same wording as the service's own refusal, so logs read alike whichever side caught it.
    const body = { success: false, error: `invalid request: ${describeIssues(request, req, checked.error.issues)}`, error_code: "validation" };
    return { ...(response.parse(body) as object), local: true } as Result<E>;
  }

  /** The service's reply message as a result: parsed with the endpoint's response schema, else bad_reply. */
  function reply<E extends EndpointName>(endpoint: E, subject: string, msg: Msg): Result<E> {
    const { response } = API[endpoint] as { response: z.ZodType };
    const raw = jsonOf(msg);
    if (raw === undefined) return { success: false, transport: true, error_code: "bad_reply", error: `reply on ${subject} is not JSON` };
    const parsed = response.safeParse(raw);
    if (!parsed.success || typeof raw !== "object" || raw === null) {
      return { success: false, transport: true, error_code: "bad_reply", error: `reply on ${subject} does not match the ${endpoint} response schema` };
    }
    // Keep fields a newer service added (the schemas strip unknown keys) under the parsed ones.
    return { ...(raw as object), ...(parsed.data as object) } as Result<E>;
  }

  async function call<E extends EndpointName>(endpoint: E, req: RequestOf<E>, opts: CallOptions = {}): Promise<Result<E>> {
    const subject = endpointSubject(prefix, endpoint);
    const timeoutMs = opts.timeoutMs ?? defaultTimeout;
    const refused = refusal(endpoint, req, opts);
    if (refused) return refused;
    let msg: Msg;
    try {
      // The request goes as written: the service applies its defaults itself.
      msg = await nc.request(subject, enc.encode(JSON.stringify(req ?? {})), { timeout: timeoutMs });
    } catch (err) {
      return transportFailure(err, subject, timeoutMs);
    }
    return reply(endpoint, subject, msg);
  }

  async function* stream<E extends StreamingEndpoint>(endpoint: E, req: RequestOf<E>, opts: CallOptions = {}): AsyncGenerator<StreamPart<E>, void> {
    const subject = endpointSubject(prefix, endpoint);
    const timeoutMs = opts.timeoutMs ?? defaultTimeout;
    const body = { ...(req as object), stream: true };
    const refused = refusal(endpoint, body, opts);
    if (refused) {
      yield refused;
      return;
    }
    // The chunks and the reply come to an inbox of this call's own, under the connection's
    // inbox root (nats.js keeps it in its options, which its types do not show).
    const inbox = createInbox((nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
    let sub: Subscription;
    try {
      sub = nc.subscribe(inbox);
    } catch (err) {
      // A closed connection.
      yield transportFailure(err, subject, timeoutMs);
      return;
    }
    // nats.js reports a publish the permissions forbid to the subscription whose
    // requestSubject it is, as for its own single-reply requests (an internal field).
    (sub as { requestSubject?: string }).requestSubject = subject;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      sub.unsubscribe();
    }, timeoutMs);
    try {
      nc.publish(subject, enc.encode(JSON.stringify(body)), { reply: inbox });
      for await (const m of sub) {
        const chunk = m.headers?.get(STREAM_HEADER.name) === STREAM_HEADER.chunk ? StreamChunk.safeParse(jsonOf(m)) : undefined;
        if (chunk?.success) {
          yield chunk.data;
          continue;
        }
        // The last message: the reply, or "no responders" from the server when no instance listens.
        if (chunk) yield { success: false, transport: true, error_code: "bad_reply", error: `a chunk on ${subject} is not a stream chunk` };
        else if (m.data.length === 0 && m.headers?.code === 503) yield transportFailure({ code: "503" }, subject, timeoutMs);
        else yield reply(endpoint, subject, m);
        return;
      }
      yield transportFailure(timedOut ? { code: "TIMEOUT" } : new Error("the subscription ended"), subject, timeoutMs);
    } catch (err) {
      yield transportFailure(err, subject, timeoutMs);
    } finally {
      clearTimeout(timer);
      sub.unsubscribe();
    }
  }

  return {
    call,
    chat: (req, opts) => call("chat", req, opts),
    complete: (req, opts) => call("complete", req, opts),
    stream,
    chatStream: (req, opts) => stream("chat", req, opts),
    completeStream: (req, opts) => stream("complete", req, opts),
    summarize: (req, opts) => call("summarize", req, opts),
    memoryAdd: (req, opts) => call("memory_add", req, opts),
    memoryRecall: (req, opts) => call("memory_recall", req, opts),
    memoryForget: (req, opts) => call("memory_forget", req, opts),
    contextReset: (req, opts) => call("context_reset", req, opts),
    personaGet: (req, opts) => call("persona_get", req, opts),
    personaSet: (req, opts) => call("persona_set", req, opts),
    personaDefine: (req, opts) => call("persona_define", req, opts),
    personaDelete: (req, opts) => call("persona_delete", req, opts),
    personaList: (req = {}, opts) => call("persona_list", req, opts),
    status: (req = {}, opts) => call("status", req, opts),
    usage: (req = {}, opts) => call("usage", req, opts),
    events: (js, opts = {}) => replayEvents(js, { prefix, ...opts }),
  };
}

export { EVENTS_STREAM, parseSince, type ReplayedEvent };
