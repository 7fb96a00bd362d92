// handlers/memory_recall.ts — rosey.llm.memory.recall
import { MemoryRecallRequest, MemoryResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";
import { fitting, jsonBytes, listBudget } from "../lib/reply";

export const name = "memory_recall";
export const request = MemoryRecallRequest;
export const response = MemoryResponse;

/**
 * The memories most relevant to the query, best first. Without user_id only channel-wide
 * memories are visible; with it, that user's own as well. Contents go in `memories`, the
 * rest of each memory in `items`; as many as fit in one NATS message (`truncated` otherwise).
 */
export async function handle(req: MemoryRecallRequest, ctx: Ctx): Promise<MemoryResponse> {
  const found = await ctx.memory.recall({ channel: req.channel, query: req.query, user_id: req.user_id, limit: req.limit });
  const pairs = found.map(({ content, ...item }) => ({ content, item }));
  const n = fitting(pairs, listBudget(ctx.maxPayload), (p) => jsonBytes(p.content) + jsonBytes(p.item) + 1);
  const sent = pairs.slice(0, n);
  ctx.events.emit("memory", { channel: req.channel, action: "recall", user_id: req.user_id ?? null, memory_count: n });
  const reply: MemoryResponse = { success: true, memories: sent.map((p) => p.content), count: n, items: sent.map((p) => p.item) };
  if (n < pairs.length) reply.truncated = true;
  return reply;
}
