// handlers/context_reset.ts — rosey.llm.admin.context.reset
import { ContextResetRequest, OkResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "context_reset";
export const request = ContextResetRequest;
export const response = OkResponse;

/** Drops a channel's conversation history and summaries; its memories stay. Counts against the channel's write limit. */
export async function handle(req: ContextResetRequest, ctx: Ctx): Promise<OkResponse> {
  await ctx.writes.admit({ channel: req.channel, admin: ctx.admin === true });
  await ctx.memory.reset(req.channel);
  return { success: true };
}
