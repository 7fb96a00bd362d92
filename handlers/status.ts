// handlers/status.ts — rosey.llm.status
import { StatusRequest, StatusResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "status";
export const request = StatusRequest;
export const response = StatusResponse;

/** Health of the service, its providers and its embeddings server, with today's global totals. */
export async function handle(req: StatusRequest, ctx: Ctx): Promise<StatusResponse> {
  const [totals, limited] = await Promise.all([ctx.usage.get({}), ctx.limiter.limited(req.user)]);
  const providers = ctx.providers.status();
  const current = ctx.providers.current();
  return {
    success: true,
    healthy: providers.some((p) => p.healthy),
    provider: current.name,
    model: current.model,
    requests_today: totals.requests_today,
    tokens_today: totals.tokens_today,
    rate_limited: limited,
    version: ctx.instance.version,
    uptime_seconds: Math.max(0, Math.floor((ctx.clock.now() - ctx.instance.started_at) / 1000)),
    instance: ctx.instance.id,
    providers,
    ...(ctx.embeddings && { embeddings: ctx.embeddings.status() }),
  };
}
