// handlers/complete.ts — rosey.llm.complete
import { CompleteRequest, ChatResponse, StreamChunk } from "../lib/schemas";
import type { Ctx } from "../lib/context";
import { callModel } from "../lib/llm";

export const name = "complete";
export const request = CompleteRequest;
export const response = ChatResponse;
/** What each message of a streamed reply (`stream: true`) carries before the final reply. */
export const chunk = StreamChunk;

/** Reply budget when the caller sets no max_tokens. */
const DEFAULT_MAX_TOKENS = 1024;

/** A raw completion over the caller's messages, with limits, fallback and accounting. */
export async function handle(req: CompleteRequest, ctx: Ctx): Promise<ChatResponse> {
  const { reply } = await callModel(ctx, {
    endpoint: name,
    user: req.user,
    channel: req.channel,
    max_tokens: req.max_tokens ?? DEFAULT_MAX_TOKENS,
    provider: req.provider,
    onDelta: ctx.stream?.send,
    prompt_length: req.messages.reduce((n, m) => n + m.content.length, 0),
    prepare: () => ({ messages: req.messages, temperature: req.temperature }),
  });
  return {
    success: true,
    content: reply.content,
    tokens_used: reply.tokens.total,
    provider: reply.provider,
    model: reply.model,
  };
}
