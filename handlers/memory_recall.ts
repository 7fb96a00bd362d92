// handlers/memory_recall.ts — rosey.llm.memory.recall
import { MemoryRecallRequest, MemoryResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "memory_recall";
export const request = MemoryRecallRequest;
export const response = MemoryResponse;

/**
 * The memories most relevant to the query, best first. Without user_id only channel-wide
 * memories are visible; with it, that user's own as well.
 */
export async function handle(req: MemoryRecallRequest, ctx: Ctx): Promise<MemoryResponse> {
  const items = await ctx.memory.recall({ channel: req.channel, query: req.query, user_id: req.user_id, limit: req.limit });
  ctx.events.emit("memory", {
    channel: req.channel,
    action: "recall",
    user_id: req.user_id ?? null,
    memory_count: items.length,
  });
  return { success: true, memories: items.map((m) => m.content), count: items.length, items };
}
