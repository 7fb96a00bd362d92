// The one path every model call takes — chat, complete, summarize and the service's own
// history summaries — and the one owner of its ticket: admit (rate limits and a token
// reservation) → the provider call → settle (real tokens, usage) or release → events.
// A refusal costs no provider call and is thrown as the contract's error (429 with
// retry_after), after its error event; a failed call returns its reservation. A streamed
// call (onDelta) takes the same path: only the reply's text also goes out as it arrives.
import type { Completion, Ctx, Ticket } from "../context/types";
import { RoseyError, isRoseyError } from "../errors";
import { estimateMessagesTokens } from "../providers/tokens";
import type { Message } from "../schemas";

/** The user under which the service's own calls (history summaries) are counted in usage. */
export const SYSTEM_USER = "rosey-llm:system";

/** What a call sends, built by the caller's prepare step. */
export interface CallPlan {
  messages: Message[];
  temperature?: number;
  /** Named in the response event. */
  persona?: string;
  /** A conversation turn: stored in the channel's history with the call's accounting. */
  exchange?: { channel: string; user: string; message: string };
}

export interface CallRequest {
  /** Named in events: the endpoint, or what the service called the model for. */
  endpoint: string;
  user?: string;
  channel?: string;
  max_tokens: number;
  /** Forces one provider by name (complete). */
  provider?: string;
  /** Length in characters of what the caller asked (the seed's prompt_length). */
  prompt_length: number;
  /**
   * Builds the plan (persona, context). `since`: performance.now() when the call began;
   * `admitted` settles when the admission has: a read that the admission's writes may spare
   * waits for it (ConversationMemory.prepare).
   */
  prepare(since: number, admitted: Promise<unknown>): CallPlan | Promise<CallPlan>;
  /**
   * The most tokens the prepared prompt may take: reserved before the plan is built, so
   * the admission and prepare run together (chat: the context budget). A plan that comes
   * out larger reserves the rest before the call. Without it, the plan is built first and
   * exactly its prompt is reserved.
   */
  promptBudget?: number;
  /** The service's own call: only the global budget applies (see Limiter.admit). */
  system?: boolean;
  /** Streams the reply: each piece of its content as the provider sends it (see CompletionOptions.onDelta). */
  onDelta?: (delta: string) => void;
}

/** What a successful call returns to its handler. */
export interface CallResult {
  reply: Completion;
  plan: CallPlan;
}

/** Tokens to reserve for a call: the prompt estimate plus the most the reply may use. */
export function reservation(messages: Message[], maxTokens: number): number {
  return estimateMessagesTokens(messages) + maxTokens;
}

/** The provider a request would reach: the forced one, else the current head of the chain. */
const providerOf = (ctx: Pick<Ctx, "providers">, req: Pick<CallRequest, "provider">) => req.provider ?? ctx.providers.current().name;

/** Publishes the refusal's error event and returns it as the contract's error. */
function refusal(ctx: Ctx, req: CallRequest, t: Extract<Ticket, { ok: false }>): RoseyError {
  ctx.events.emit("error", {
    channel: req.channel ?? null,
    user: req.user ?? null,
    error: t.message,
    provider: providerOf(ctx, req),
    error_type: t.code === "quota_exceeded" ? "quota" : "rate_limit",
    endpoint: req.endpoint,
  });
  return new RoseyError(t.code, t.message, { retry_after: t.retry_after });
}

/** Admission and prepare: concurrently with a prompt budget, else the plan first. A refusal is thrown. */
async function admitAndPrepare(ctx: Ctx, req: CallRequest, since: number): Promise<{ plan: CallPlan; ticket: Ticket & { ok: true } }> {
  const admit = async (tokens: number, atLeast?: number) => {
    const t = await ctx.limiter.admit({ user: req.user, channel: req.channel, tokens, atLeast, system: req.system });
    if (!t.ok) throw refusal(ctx, req, t);
    return t;
  };
  if (req.promptBudget === undefined) {
    const plan = await req.prepare(since, Promise.resolve());
    return { plan, ticket: await admit(reservation(plan.messages, req.max_tokens)) };
  }
  // A user near the end of their quota may hold less than the budget: enough for the reply
  // will do, and the prompt is reserved once it is known.
  const admitted = admit(req.promptBudget + req.max_tokens, req.max_tokens + 3);
  const [p, t] = await Promise.allSettled([Promise.resolve().then(() => req.prepare(since, admitted)), admitted]);
  if (p.status === "rejected") {
    if (t.status === "fulfilled") await ctx.limiter.release(t.value).catch(() => undefined);
    throw p.reason;
  }
  if (t.status === "rejected") throw t.reason;
  return { plan: p.value, ticket: t.value };
}

/** Admits, calls the provider chain, and accounts for the result. Throws RoseyError on refusal or provider failure. */
export async function callModel(ctx: Ctx, req: CallRequest): Promise<CallResult> {
  const started = performance.now();
  // A bad provider name is the caller's mistake: refuse it before it costs any limit.
  if (req.provider && !ctx.providers.status().some((p) => p.name === req.provider)) {
    throw new RoseyError("validation", `provider: "${req.provider}" is not one of ${ctx.providers.status().map((p) => p.name).join(", ")}`);
  }
  const admitted = await admitAndPrepare(ctx, req, started);
  const plan = admitted.plan;
  let ticket = admitted.ticket;
  const release = (t: Ticket & { ok: true }) => ctx.limiter.release(t).catch((e) => ctx.log.warn("release failed", { error: String(e) }));

  // Reserve what is really sent: a plan larger than its budget takes the rest now.
  const need = reservation(plan.messages, req.max_tokens);
  if (need > ticket.reserved) {
    const held = ticket;
    const more = await ctx.limiter.extend(held, need - held.reserved).catch(async (err) => {
      await release(held);
      throw err;
    });
    if (!more.ok) {
      await release(ticket);
      throw refusal(ctx, req, more);
    }
    ticket = more;
  }

  let reply: Completion;
  try {
    reply = await ctx.providers.complete(plan.messages, {
      temperature: plan.temperature,
      max_tokens: req.max_tokens,
      provider: req.provider,
      signal: ctx.signal,
      onDelta: req.onDelta,
    });
  } catch (err) {
    await release(ticket);
    const e = isRoseyError(err) ? err : new RoseyError("provider_error", "the model call failed", { cause: err });
    ctx.events.emit("error", {
      channel: req.channel ?? null,
      user: req.user ?? null,
      error: e.message.slice(0, 500),
      provider: e.provider ?? providerOf(ctx, req),
      error_type: e.code === "validation" ? "validation" : "provider_error",
      endpoint: req.endpoint,
    });
    throw e;
  }

  // Independent round trips, so concurrently; both finish before the reply so a caller
  // reading usage, limits or history right after sees this call in them.
  const x = plan.exchange;
  const [settled, stored] = await Promise.allSettled([
    ctx.limiter.settle(ticket, { tokens: reply.tokens.total, provider: reply.provider }),
    x ? ctx.memory.record(x.channel, x.user, x.message, reply.content) : undefined,
  ]);
  if (settled.status === "rejected") throw settled.reason;
  ctx.events.emit("response", {
    channel: req.channel ?? null,
    user: req.user ?? null,
    prompt_length: req.prompt_length,
    response_length: reply.content.length,
    tokens_used: reply.tokens.total,
    provider: reply.provider,
    latency_ms: Math.round(performance.now() - started),
    model: reply.model,
    ...(plan.persona ? { persona: plan.persona } : {}),
    endpoint: req.endpoint,
  });
  // The model answered and was accounted for: the event stands even if the history write failed.
  if (stored.status === "rejected") throw stored.reason;
  return { reply, plan };
}

/** Reply budget and temperature of a history summary. */
const SUMMARY_MAX_TOKENS = 400;
const SUMMARY_TEMPERATURE = 0.3;

/**
 * A summary of a channel's history (the memory's summarizer): a model call like any other,
 * admitted against the global budget, counted in usage under the channel and SYSTEM_USER,
 * with its events.
 */
export async function summarizeHistory(ctx: Ctx, req: { channel: string; messages: Message[]; signal?: AbortSignal }): Promise<string> {
  const { reply } = await callModel(req.signal ? { ...ctx, signal: req.signal } : ctx, {
    endpoint: "memory.summary",
    user: SYSTEM_USER,
    channel: req.channel,
    system: true,
    max_tokens: SUMMARY_MAX_TOKENS,
    prompt_length: req.messages.reduce((n, m) => n + m.content.length, 0),
    prepare: () => ({ messages: req.messages, temperature: SUMMARY_TEMPERATURE }),
  });
  return reply.content;
}
