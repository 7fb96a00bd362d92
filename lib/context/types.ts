// The host services a handler receives. Handlers never hold a NATS connection: the
// runtime builds a Ctx from the connection (runtime/context.ts) and tests build one from
// in-memory parts (test/helpers/context.ts).
import type { Config } from "../config";
import type {
  EventName,
  EventPayload,
  Memory,
  MemoryCategory,
  Message,
  Persona,
  ProviderStatus,
  RateLimitsRemaining,
} from "../schemas";

export interface Clock {
  /** Milliseconds since the epoch. Injectable so tests can cross window boundaries. */
  now(): number;
}

export type LogLevel = "debug" | "info" | "warn" | "error";
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

// ---------------------------------------------------------------- events

export interface Events {
  /**
   * Validates the payload now (throws on a bad one) and publishes the envelope to JetStream
   * in the background; `flush` waits for every publish in flight. Returns the event id.
   * `id` fixes the Nats-Msg-Id, so racing publishers of the same fact dedupe to one event.
   */
  emit<N extends EventName>(name: N, payload: EventPayload<N>, opts?: { id?: string }): string;
  /**
   * As emit (validation throws at once), but resolves with the id once the stream has stored
   * the event, and rejects when publishing gave up (after logging it). Optional: an Events
   * without it (a test recorder) counts an emitted event as stored.
   */
  publish?<N extends EventName>(name: N, payload: EventPayload<N>, opts?: { id?: string }): Promise<string>;
  flush(): Promise<void>;
}

// ---------------------------------------------------------------- providers

export interface TokenCounts {
  prompt: number;
  completion: number;
  total: number;
}

export interface CompletionOptions {
  temperature?: number;
  max_tokens?: number;
  /** Force one provider by name; fails with provider_unavailable when it is down. */
  provider?: string;
  /** Aborts the call (the runtime's per-request deadline). */
  signal?: AbortSignal;
  /**
   * Streams the reply: called with each piece of its content as the provider sends it, in
   * order (the pieces add up to the content). A call that sent a piece never falls back to
   * another provider: a failure after it ends the call.
   */
  onDelta?: (delta: string) => void;
}

export interface Completion {
  content: string;
  tokens: TokenCounts;
  /** True when `tokens` came from the provider's usage block, false when estimated. */
  tokens_reported: boolean;
  provider: string;
  model: string;
  finish_reason: string;
  latency_ms: number;
}

/** One backend (offline, or an OpenAI-compatible server). */
export interface Provider {
  readonly name: string;
  readonly model: string;
  complete(messages: Message[], options: CompletionOptions, signal?: AbortSignal): Promise<Completion>;
}

/** The fallback chain with health tracking. */
export interface Providers {
  /** Calls the first healthy provider of the chain (or the forced one), falling back on failure. */
  complete(messages: Message[], options?: CompletionOptions): Promise<Completion>;
  /** Health of every configured provider in chain order. */
  status(): ProviderStatus[];
  /** The provider a call would go to now. */
  current(): { name: string; model: string };
  /** Token estimate for text, used for reservations and when a provider reports no usage. */
  estimateTokens(text: string): number;
}

// ---------------------------------------------------------------- limits and usage

export interface AdmitRequest {
  user?: string;
  channel?: string;
  /** Tokens to reserve against the quotas: the prompt (or its budget) plus max_tokens. */
  tokens: number;
  /**
   * When `tokens` do not fit what is left of the user's quota, a reservation of what is left
   * will do as long as it is at least this much: the caller reserves the rest once it knows
   * its real size (extend). Default: `tokens`.
   */
  atLeast?: number;
  /**
   * The service's own call (history summaries): only the global budget applies; usage is
   * recorded under `user` (the system user) and `channel` as for any call.
   */
  system?: boolean;
}

/** What the limiter decided; `ok: false` carries the refusal for the caller. */
export type Ticket =
  | {
      ok: true;
      /** Opaque handle for settle/release. */
      id: string;
      user?: string;
      channel?: string;
      reserved: number;
    }
  | {
      ok: false;
      code: "rate_limited" | "quota_exceeded";
      /** Which window refused: per-minute, per-hour, per-day, channel-per-hour, tokens-per-day, global-tokens-per-day. */
      window: string;
      retry_after: number;
      message: string;
    };

/** What a finished call spent. */
export interface CallSpend {
  tokens: number;
  provider: string;
}

export interface Limiter {
  /** Counts the request against every window and reserves tokens, or refuses without counting. */
  admit(req: AdmitRequest): Promise<Ticket>;
  /**
   * Reserves `tokens` more for an admitted call (its prompt came out larger than reserved):
   * the ticket with the larger reservation, or a refusal that leaves the ticket as it was.
   */
  extend(ticket: Ticket & { ok: true }, tokens: number): Promise<Ticket>;
  /** Replaces the reservation with the real token count and records the call in usage. */
  settle(ticket: Ticket & { ok: true }, spend: CallSpend): Promise<void>;
  /** Returns the reservation after a failed call. */
  release(ticket: Ticket & { ok: true }): Promise<void>;
  /** What is left for a user (or the defaults when no user); a channel narrows per_hour to it too. */
  remaining(user?: string, channel?: string): Promise<RateLimitsRemaining>;
  /** True when the global daily token budget (or the user's quota/limits) is spent. */
  limited(user?: string): Promise<boolean>;
}

export interface UsageTotals {
  requests_today: number;
  tokens_today: number;
  by_provider?: Record<string, { requests: number; tokens: number }>;
}

/** Today's usage, as settled calls recorded it (Limiter.settle). */
export interface Usage {
  /** Today's totals for a user, a channel, or (neither) the whole service. */
  get(q: { user?: string; channel?: string }): Promise<UsageTotals>;
}

// ---------------------------------------------------------------- memory and personas

export interface Personas {
  list(): Promise<Persona[]>;
  get(name: string): Promise<Persona | null>;
  /**
   * The persona for a channel: `override` when given, else the channel's selection, else
   * default. The selection is stored with the channel's memory: given the channel's memory
   * being read for a chat (`prepared`), it comes from that read, with no round trip of its own.
   */
  forChannel(channel: string, override?: string, prepared?: PreparedChannel): Promise<Persona>;
  select(channel: string, name: string): Promise<Persona>;
  /** Defines or updates a persona (built-in and configured ones are fixed: validation). */
  define(p: Omit<Persona, "builtin">): Promise<Persona>;
  /** Deletes a defined persona and returns it (unknown: not_found; fixed: validation). */
  remove(name: string): Promise<Persona>;
}

export interface AddMemory {
  channel: string;
  content: string;
  category: MemoryCategory;
  user_id?: string;
  importance: number;
}

/** A channel's memory being read ahead of context(): see ConversationMemory.prepare. */
export interface PreparedChannel {
  readonly channel: string;
  /** Settles when the read is done; never rejects (context() reads again after a failure). */
  readonly done: Promise<unknown>;
}

export interface ConversationMemory {
  /**
   * Starts reading the channel's memory from the bucket (one round trip: what changed since
   * this instance last read it, or the whole channel when it is not cached) and returns at
   * once. A handler that needs context() later starts this first, alongside its other
   * independent round trips (the limiter's admission, the channel's persona), and passes the
   * result to context(), which then makes no round trip of its own. Without it, context()
   * reads the channel itself, after whatever the handler awaited before. With `proof`, the
   * read waits until `after` settles (the admission), and a write of the channel sent after
   * `since` (performance.now() when the request began) that proved the channel current spares
   * it (lib/kv/group-cache.ts).
   */
  prepare(channel: string, proof?: { since: number; after: Promise<unknown> }): PreparedChannel;
  /**
   * True when this instance holds the channel and saw no other instance write to it lately. A
   * chat then prepares the channel with a proof (see prepare): the admission's write of the
   * channel's rate-limit document proves the channel current, so nothing is read, or, when
   * this instance does not know where the channel stands, the read after it learns that, so
   * that the next chat's write does (lib/kv/group-cache.ts).
   */
  quiet(channel: string): boolean;
  /**
   * Messages for the provider: persona prompt (the only system message), summaries and
   * recalled facts quoted as data, history, the new message. Sees every write of any instance acknowledged before the call, or before
   * `prepared` was started.
   */
  context(channel: string, user: string, message: string, persona: Persona, prepared?: PreparedChannel): Promise<Message[]>;
  /** Appends the user turn and the reply to the channel's history (and summarizes when due). */
  record(channel: string, user: string, message: string, reply: string): Promise<void>;
  add(m: AddMemory): Promise<Memory>;
  recall(q: { channel: string; query: string; user_id?: string; limit: number }): Promise<Memory[]>;
  forget(q: { channel: string; id?: string; user_id?: string }): Promise<number>;
  /** Drops history and summaries, keeps memories. */
  reset(channel: string): Promise<void>;
}

// ---------------------------------------------------------------- the context

/**
 * The caller's side of a streamed reply (a request with `stream: true`): pieces of the reply
 * go to the caller as they are written, ahead of the final reply. When the caller stops
 * listening, the request's `signal` aborts, with the reason a cancel has (an AbortError).
 */
export interface ReplyStream {
  /**
   * Sends the next piece of the reply's content; empty pieces, and any after the stream
   * ended, are dropped. A function of its own: it may be passed on as `onDelta`.
   */
  readonly send: (delta: string) => void;
}

/** Counts one write against its user's and channel's write limits, or throws rate_limited. */
export interface WriteLimiter {
  admit(w: { user?: string; channel?: string; admin: boolean }): Promise<void>;
}

export interface InstanceInfo {
  service: string;
  version: string;
  id: string;
  started_at: number;
}

export interface Ctx {
  config: Config;
  clock: Clock;
  log: Logger;
  instance: InstanceInfo;
  events: Events;
  providers: Providers;
  limiter: Limiter;
  /** Per-user and per-channel limits of memory, context and persona writes. */
  writes: WriteLimiter;
  usage: Usage;
  memory: ConversationMemory;
  personas: Personas;
  /** Recall's embeddings server, when config.embeddings names a model. */
  embeddings?: { status(): ProviderStatus };
  /** Aborted when the request's deadline passes, or a streamed request's caller stops listening; pass to provider calls. */
  signal?: AbortSignal;
  /** Present when the request asked for `stream: true` and has a reply subject to stream to. */
  stream?: ReplyStream;
  /** The largest message the connection may send (the server's max_payload); list replies stay under it. */
  maxPayload?: number;
  /** True when the request arrived on an administrative subject (`<prefix>.llm.admin.>`). */
  admin?: boolean;
}
