// handlers/memory_forget.ts — rosey.llm.admin.memory.forget
import { MemoryForgetRequest, MemoryResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";
import { notFound } from "../lib/errors";

export const name = "memory_forget";
export const request = MemoryForgetRequest;
export const response = MemoryResponse;

/**
 * Forgets one memory (id; with user_id only if it is that user's) or every memory of a
 * user. `count` is how many were forgotten; an unknown id is not_found. Counts against the
 * write limits of user_id and the channel.
 */
export async function handle(req: MemoryForgetRequest, ctx: Ctx): Promise<MemoryResponse> {
  await ctx.writes.admit({ user: req.user_id, channel: req.channel, admin: ctx.admin === true });
  const count = await ctx.memory.forget({ channel: req.channel, id: req.id, user_id: req.user_id });
  if (req.id !== undefined && count === 0) throw notFound(`no memory "${req.id}" in this channel`);
  ctx.events.emit("memory", { channel: req.channel, action: "forget", user_id: req.user_id ?? null, memory_count: count });
  return { success: true, memories: [], count };
}
