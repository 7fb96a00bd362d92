// handlers/context_reset.ts — rosey.llm.admin.context.reset
import { ContextResetRequest, OkResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "context_reset";
export const request = ContextResetRequest;
export const response = OkResponse;

/** Drops a channel's conversation history and summaries; its memories stay. */
export async function handle(req: ContextResetRequest, ctx: Ctx): Promise<OkResponse> {
  await ctx.memory.reset(req.channel);
  return { success: true };
}
