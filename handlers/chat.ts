// handlers/chat.ts — rosey.llm.chat
import { ChatRequest, ChatResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";
import { callModel, refuse, reservation } from "../lib/llm";

export const name = "chat";
export const request = ChatRequest;
export const response = ChatResponse;

/** Most tokens a chat reply may use: chat answers are short. */
const CHAT_MAX_TOKENS = 512;

/** A chat turn in a channel: persona, memory and history in, the reply recorded and published. */
export async function handle(req: ChatRequest, ctx: Ctx): Promise<ChatResponse> {
  const call = { endpoint: name, user: req.user, channel: req.channel } as const;
  const persona = await ctx.personas.forChannel(req.channel, req.persona);
  // Reserve for the message and the reply before any work; history is settled with the real count.
  const ticket = await ctx.limiter.admit({
    user: req.user,
    channel: req.channel,
    tokens: reservation(ctx, [{ role: "user", content: req.message }], CHAT_MAX_TOKENS),
  });
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
    },
    ticket,
  );
  if (!r.ok) return { ...refuse(ctx, call, r.refusal), tokens_used: 0 };
  await ctx.memory.record(req.channel, req.user, req.message, r.reply.content);
  return {
    success: true,
    content: r.reply.content,
    tokens_used: r.reply.tokens.total,
    provider: r.reply.provider,
    model: r.reply.model,
    persona: persona.name,
  };
}
