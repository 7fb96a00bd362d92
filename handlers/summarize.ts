// handlers/summarize.ts — rosey.llm.summarize
import { SummarizeRequest, SummaryResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";
import { callModel } from "../lib/llm";
import { limitWords, summarizePrompt } from "../lib/providers/summarize";

export const name = "summarize";
export const request = SummarizeRequest;
export const response = SummaryResponse;

/** A summary of the text in the requested style, never longer than max_length words. */
export async function handle(req: SummarizeRequest, ctx: Ctx): Promise<SummaryResponse> {
  const prompt = summarizePrompt(req.text, req.max_length, req.style);
  const { reply } = await callModel(ctx, {
    endpoint: name,
    user: req.user,
    channel: req.channel,
    max_tokens: prompt.max_tokens,
    prompt_length: req.text.length,
    prepare: () => ({ messages: prompt.messages, temperature: prompt.temperature }),
  });
  return {
    success: true,
    summary: limitWords(reply.content, req.max_length),
    tokens_used: reply.tokens.total,
    provider: reply.provider,
    model: reply.model,
  };
}
