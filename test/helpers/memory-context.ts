// A Ctx built from the real lib parts over in-memory KV buckets: handlers run exactly as in
// the service, minus NATS. Providers can be replaced by a recording fake.
import { defaultConfig, type ConfigInput } from "../../lib/config";
import type { Clock, Completion, CompletionOptions, Ctx, Logger, Providers } from "../../lib/context";
import { MemoryKv, type Kv } from "../../lib/kv";
import { createLimiter } from "../../lib/limiter";
import { summarizeHistory } from "../../lib/llm";
import { silentLogger } from "../../lib/log";
import { createMemory, type MemoryService } from "../../lib/memory";
import { createPersonas, type PersonasService } from "../../lib/personas";
import { createProviders, estimateTokens } from "../../lib/providers";
import type { Message } from "../../lib/schemas";
import { createUsage } from "../../lib/usage";
import { createTestContext, type TestCtx } from "./context";

export interface RecordedCall {
  messages: Message[];
  options: CompletionOptions;
}

/** Providers that answer `reply` (or throw what `fail` returns) and record every call. */
export function recordingProviders(
  reply: (messages: Message[]) => string = (m) => `echo: ${m[m.length - 1].content}`,
): Providers & { calls: RecordedCall[]; fail?: () => Error } {
  const calls: RecordedCall[] = [];
  const self: Providers & { calls: RecordedCall[]; fail?: () => Error } = {
    calls,
    async complete(messages, options = {}): Promise<Completion> {
      calls.push({ messages, options });
      if (self.fail) throw self.fail();
      const content = reply(messages);
      const prompt = messages.reduce((n, m) => n + estimateTokens(m.content), 0);
      const completion = estimateTokens(content);
      return {
        content,
        tokens: { prompt, completion, total: prompt + completion },
        tokens_reported: true,
        provider: "recorder",
        model: "rec-1",
        finish_reason: "stop",
        latency_ms: 0,
      };
    },
    status: () => [{ name: "recorder", model: "rec-1", healthy: true }],
    current: () => ({ name: "recorder", model: "rec-1" }),
    estimateTokens,
  };
  return self;
}

export type MemoryCtx = TestCtx & { buckets: Record<string, MemoryKv>; close(): Promise<void> };

/** A context over fresh in-memory buckets with the real limiter, usage, memory and personas. */
export async function createMemoryContext(
  opts: { config?: Partial<ConfigInput>; clock?: Clock; providers?: Providers } = {},
): Promise<MemoryCtx> {
  const config = defaultConfig({ log: { level: "silent" }, ...(opts.config ?? {}) });
  const clock = opts.clock ?? { now: () => Date.now() };
  const base = createTestContext({ clock });
  const events = base.events;
  const buckets = {
    limits: new MemoryKv("ROSEY_LLM_LIMITS"),
    personas: new MemoryKv("ROSEY_LLM_PERSONAS"),
    memory: new MemoryKv("ROSEY_LLM_MEMORY"),
  };
  const log = silentLogger;
  const providers = opts.providers ?? createProviders(config, { log, clock });
  const limiter = createLimiter({ kv: buckets.limits, config, clock, events, log, instance: "test" });
  const usage = createUsage({ kv: buckets.limits, config, clock, log, pending: limiter.pendingUsage });
  // As in the runtime: history summaries are model calls through lib/llm.
  let ctx!: Ctx;
  const summarizer = (req: { channel: string; messages: Message[] }) => summarizeHistory(ctx, req);
  const memory = createMemory({ kv: buckets.memory, config, clock, events, providers, log, instance: "test", summarizer });
  const personas = createPersonas({ kv: buckets.personas, selections: memory.selections, config, log });
  ctx = { ...base, config, clock, log, providers, limiter, usage, personas, memory };
  return Object.assign(ctx, {
    recorded: base.recorded,
    buckets,
    async close() {
      await memory.settled();
      memory.close();
      await limiter.close();
    },
  });
}

/**
 * Personas over the in-memory buckets given, with the memory that keeps channels' selections
 * (no provider: nothing here summarizes).
 */
export function personasOver(
  kv: MemoryKv,
  opts: { config?: Partial<ConfigInput>; memory?: Kv; log?: Logger; clock?: Clock } = {},
): { personas: PersonasService; memory: MemoryService } {
  const config = defaultConfig(opts.config ?? {});
  const log = opts.log ?? silentLogger;
  const clock = opts.clock ?? { now: () => Date.now() };
  const events = { emit: () => "event", flush: async () => {} };
  const memory = createMemory({ kv: opts.memory ?? new MemoryKv("ROSEY_LLM_MEMORY"), config, clock, events, providers: {} as Providers, log });
  return { personas: createPersonas({ kv, selections: memory.selections, config, log, clock }), memory };
}
