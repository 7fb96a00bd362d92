// handlers/summarize.ts — rosey.llm.summarize
import { SummarizeRequest, SummaryResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";
import { callModel, refuse } from "../lib/llm";
import { limitWords, summarizePrompt } from "../lib/providers/summarize";

export const name = "summarize";
export const request = SummarizeRequest;
export const response = SummaryResponse;

/** A summary of the text in the requested style, never longer than max_length words. */
export async function handle(req: SummarizeRequest, ctx: Ctx): Promise<SummaryResponse> {
  const prompt = summarizePrompt(req.text, req.max_length, req.style);
  const call = { endpoint: name, user: req.user, channel: req.channel } as const;
  const r = await callModel(ctx, {
    ...call,
    messages: prompt.messages,
    temperature: prompt.temperature,
    max_tokens: prompt.max_tokens,
    prompt_length: req.text.length,
  });
  if (!r.ok) return refuse(ctx, call, r.refusal);
  return {
    success: true,
    summary: limitWords(r.reply.content, req.max_length),
    tokens_used: r.reply.tokens.total,
    provider: r.reply.provider,
    model: r.reply.model,
  };
}
