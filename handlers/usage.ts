// handlers/usage.ts — rosey.llm.usage
import { UsageRequest, UsageResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "usage";
export const request = UsageRequest;
export const response = UsageResponse;

/**
 * Today's requests and tokens of a user (when given), else of a channel, else of the whole
 * service, with the split by provider and the active provider; and what is left of the
 * user's limits (-1: exempt, no limit). Without a user, the remaining limits are those a
 * user starts the day with.
 */
export async function handle(req: UsageRequest, ctx: Ctx): Promise<UsageResponse> {
  const [totals, remaining] = await Promise.all([
    ctx.usage.get({ user: req.user, channel: req.channel }),
    ctx.limiter.remaining(req.user, req.channel),
  ]);
  const reply: UsageResponse = {
    success: true,
    requests_today: totals.requests_today,
    tokens_today: totals.tokens_today,
    rate_limits_remaining: remaining,
    provider: ctx.providers.current().name,
  };
  if (req.user !== undefined) reply.user = req.user;
  if (req.channel !== undefined) reply.channel = req.channel;
  if (totals.by_provider) reply.by_provider = totals.by_provider;
  return reply;
}
