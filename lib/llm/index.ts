// The path every model call takes, shared by chat, complete and summarize:
// admit (rate limits + token reservation) → provider call → settle, usage, events.
// A refusal costs no provider call; a failed call returns its reservation.
import type { Completion, Ctx, Ticket } from "../context/types";
import { RoseyError, isRoseyError } from "../errors";
import type { Message } from "../schemas";

export interface CallRequest {
  endpoint: "chat" | "complete" | "summarize";
  user?: string;
  channel?: string;
  messages: Message[];
  temperature?: number;
  max_tokens: number;
  provider?: string;
  persona?: string;
  /** Length in characters of what the caller asked (the seed's prompt_length). */
  prompt_length: number;
  /**
   * Work that needs the reply and is independent of the accounting (chat records the
   * exchange): it runs concurrently with settle and usage, so it adds no round trip.
   */
  alongside?: (reply: Completion) => Promise<unknown>;
}

export type CallResult =
  | { ok: true; reply: Completion; latency_ms: number }
  | { ok: false; refusal: Extract<Ticket, { ok: false }> };

/** Tokens to reserve for a call: the prompt estimate plus the most the reply may use. */
export function reservation(ctx: Ctx, messages: Message[], maxTokens: number): number {
  let prompt = 3;
  for (const m of messages) prompt += 4 + ctx.providers.estimateTokens(m.content);
  return prompt + maxTokens;
}

/** Publishes the error event and returns the refusal reply fields. */
export function refuse(ctx: Ctx, req: Pick<CallRequest, "endpoint" | "user" | "channel">, t: Extract<Ticket, { ok: false }>) {
  ctx.events.emit("error", {
    channel: req.channel ?? null,
    user: req.user ?? null,
    error: t.message,
    provider: null,
    error_type: t.code === "quota_exceeded" ? "quota" : "rate_limit",
    endpoint: req.endpoint,
  });
  return { success: false as const, error: t.message, error_code: t.code, retry_after: t.retry_after };
}

/** Admits, calls the provider chain, and accounts for the result. Throws RoseyError on provider failure. */
export async function callModel(ctx: Ctx, req: CallRequest, admitted?: Ticket): Promise<CallResult> {
  const started = performance.now();
  // A bad provider name is the caller's mistake: refuse it before it costs any limit.
  if (req.provider && !ctx.providers.status().some((p) => p.name === req.provider)) {
    if (admitted?.ok) await ctx.limiter.release(admitted);
    throw new RoseyError("validation", `provider: "${req.provider}" is not one of ${ctx.providers.status().map((p) => p.name).join(", ")}`);
  }
  const ticket =
    admitted ??
    (await ctx.limiter.admit({
      user: req.user,
      channel: req.channel,
      tokens: reservation(ctx, req.messages, req.max_tokens),
    }));
  if (!ticket.ok) return { ok: false, refusal: ticket };

  let reply: Completion;
  try {
    reply = await ctx.providers.complete(req.messages, {
      temperature: req.temperature,
      max_tokens: req.max_tokens,
      provider: req.provider,
      signal: ctx.signal,
    });
  } catch (err) {
    await ctx.limiter.release(ticket).catch((e) => ctx.log.warn("release failed", { error: String(e) }));
    const e = isRoseyError(err) ? err : new RoseyError("provider_error", "the model call failed", { cause: err });
    ctx.events.emit("error", {
      channel: req.channel ?? null,
      user: req.user ?? null,
      error: e.message.slice(0, 500),
      provider: e.provider ?? null,
      error_type: e.code === "validation" ? "validation" : "provider_error",
      endpoint: req.endpoint,
    });
    throw e;
  }

  // Independent round trips, so concurrently; every one finishes before the reply so a
  // caller reading usage, limits or history right after sees this call in them.
  const done = await Promise.allSettled([
    ctx.limiter.settle(ticket, reply.tokens.total),
    ctx.usage.record({ user: req.user, channel: req.channel, provider: reply.provider, tokens: reply.tokens.total }),
    req.alongside?.(reply),
  ]);
  const [settled, recorded, side] = done;
  if (settled.status === "rejected") throw settled.reason;
  if (recorded.status === "rejected") throw recorded.reason;
  const latency_ms = Math.round((performance.now() - started) * 1000) / 1000;
  ctx.events.emit("response", {
    channel: req.channel ?? null,
    user: req.user ?? null,
    prompt_length: req.prompt_length,
    response_length: reply.content.length,
    tokens_used: reply.tokens.total,
    provider: reply.provider,
    latency_ms,
    model: reply.model,
    ...(req.persona ? { persona: req.persona } : {}),
    endpoint: req.endpoint,
  });
  // The model answered and was accounted for: the event stands even if the side work failed.
  if (side.status === "rejected") throw side.reason;
  return { ok: true, reply, latency_ms };
}
