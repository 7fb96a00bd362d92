// handlers/memory_add.ts — rosey.llm.memory.add
import { MemoryAddRequest, MemoryResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "memory_add";
export const request = MemoryAddRequest;
export const response = MemoryResponse;

/**
 * Remembers a fact, preference or topic for a channel (or one user in it). A near-identical
 * memory in the same scope is refreshed instead of duplicated; the reply carries the stored one.
 * Counts against the write limits of user_id and the channel (rate_limited, nothing stored).
 */
export async function handle(req: MemoryAddRequest, ctx: Ctx): Promise<MemoryResponse> {
  await ctx.writes.admit({ user: req.user_id, channel: req.channel, admin: ctx.admin === true });
  const m = await ctx.memory.add({
    channel: req.channel,
    content: req.content,
    category: req.category,
    user_id: req.user_id,
    importance: req.importance,
  });
  // memory_count: how many memories the action touched (here the one stored).
  ctx.events.emit("memory", { channel: req.channel, action: "add", user_id: req.user_id ?? null, memory_count: 1 });
  const { content, ...item } = m;
  return { success: true, memories: [content], count: 1, items: [item] };
}
