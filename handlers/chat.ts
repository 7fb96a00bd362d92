// handlers/chat.ts — rosey.llm.chat
import { ChatRequest, ChatResponse, StreamChunk } from "../lib/schemas";
import type { Ctx } from "../lib/context";
import { callModel } from "../lib/llm";

export const name = "chat";
export const request = ChatRequest;
export const response = ChatResponse;
/** What each message of a streamed reply (`stream: true`) carries before the final reply. */
export const chunk = StreamChunk;

/** Most tokens a chat reply may use: chat answers are short. */
const CHAT_MAX_TOKENS = 512;

/** A chat turn in a channel: persona, memory and history in, the reply recorded and published. */
export async function handle(req: ChatRequest, ctx: Ctx): Promise<ChatResponse> {
  // An unknown persona override is the caller's mistake and must not cost a request: check
  // it first (a built-in or operator persona is known locally, so this is no round trip).
  const override = req.persona !== undefined ? await ctx.personas.forChannel(req.channel, req.persona) : undefined;
  const { reply, plan } = await callModel(ctx, {
    endpoint: name,
    user: req.user,
    channel: req.channel,
    max_tokens: CHAT_MAX_TOKENS,
    prompt_length: req.message.length,
    onDelta: ctx.stream?.send,
    // The context is bounded by the memory's token budget: reserved up front, so the
    // admission runs while the context is assembled (a larger prompt reserves the rest).
    promptBudget: ctx.config.memory.context_tokens,
    async prepare(since, admitted) {
      // One read of the channel brings its memory and its persona selection, alongside the
      // admission. On a channel no other instance wrote lately, the admission's write of the
      // channel's rate-limit document proves the channel current: the read waits for it, and is
      // then spared.
      const channel = ctx.memory.prepare(req.channel, ctx.memory.quiet(req.channel) ? { since, after: admitted } : undefined);
      const persona = override ?? (await ctx.personas.forChannel(req.channel, undefined, channel));
      return {
        messages: await ctx.memory.context(req.channel, req.user, req.message, persona, channel),
        temperature: persona.temperature,
        persona: persona.name,
        exchange: { channel: req.channel, user: req.user, message: req.message },
      };
    },
  });
  return {
    success: true,
    content: reply.content,
    tokens_used: reply.tokens.total,
    provider: reply.provider,
    model: reply.model,
    persona: plan.persona,
  };
}
