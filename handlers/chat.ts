// handlers/chat.ts — rosey.llm.chat
import { ChatRequest, ChatResponse } from "../lib/schemas";
import type { Ctx, Ticket } from "../lib/context";
import type { Persona } from "../lib/schemas";
import { callModel, refuse, reservation } from "../lib/llm";

export const name = "chat";
export const request = ChatRequest;
export const response = ChatResponse;

/** Most tokens a chat reply may use: chat answers are short. */
const CHAT_MAX_TOKENS = 512;

/** A chat turn in a channel: persona, memory and history in, the reply recorded and published. */
export async function handle(req: ChatRequest, ctx: Ctx): Promise<ChatResponse> {
  const call = { endpoint: name, user: req.user, channel: req.channel } as const;
  // Reserve for the message and the reply before any work; history is settled with the real count.
  const admit = () =>
    ctx.limiter.admit({
      user: req.user,
      channel: req.channel,
      tokens: reservation(ctx, [{ role: "user", content: req.message }], CHAT_MAX_TOKENS),
    });
  let persona: Persona;
  let ticket: Ticket;
  if (req.persona !== undefined) {
    // An unknown override is the caller's mistake and must not cost a request: check it first
    // (a built-in or operator persona is known locally, so this is no round trip).
    persona = await ctx.personas.forChannel(req.channel, req.persona);
    ticket = await admit();
  } else {
    // The channel's selection (served from a watch-fed mirror) and the admission are independent: run them together.
    const [p, t] = await Promise.allSettled([ctx.personas.forChannel(req.channel), admit()]);
    if (p.status === "rejected") {
      if (t.status === "fulfilled" && t.value.ok) await ctx.limiter.release(t.value).catch(() => undefined);
      throw p.reason;
    }
    if (t.status === "rejected") throw t.reason;
    persona = p.value;
    ticket = t.value;
  }
  if (!ticket.ok) return { ...refuse(ctx, call, ticket), tokens_used: 0 };

  let messages;
  try {
    messages = await ctx.memory.context(req.channel, req.user, req.message, persona);
  } catch (err) {
    await ctx.limiter.release(ticket);
    throw err;
  }
  const r = await callModel(
    ctx,
    {
      ...call,
      messages,
      temperature: persona.temperature,
      max_tokens: CHAT_MAX_TOKENS,
      persona: persona.name,
      prompt_length: req.message.length,
      // History is written while the call is accounted for, not after.
      alongside: (reply) => ctx.memory.record(req.channel, req.user, req.message, reply.content),
    },
    ticket,
  );
  if (!r.ok) return { ...refuse(ctx, call, r.refusal), tokens_used: 0 };
  return {
    success: true,
    content: r.reply.content,
    tokens_used: r.reply.tokens.total,
    provider: r.reply.provider,
    model: r.reply.model,
    persona: persona.name,
  };
}
