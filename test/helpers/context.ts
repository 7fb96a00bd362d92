// A Ctx for unit tests of handlers: in-memory parts, recorded events, and any part not
// given throws when used, so a test states exactly what its handler touches.
import { defaultConfig, type ConfigInput } from "../../lib/config";
import type { Ctx } from "../../lib/context";
import type { EventName } from "../../lib/schemas";
import { silentLogger } from "../../lib/log";
import { MemoryKv } from "../../lib/kv";
import { createWriteLimiter } from "../../lib/limiter";

export interface RecordedEvent {
  name: EventName;
  payload: Record<string, unknown>;
  id: string;
}

function unstubbed<T extends object>(part: string): T {
  return new Proxy({} as T, {
    get(_t, prop) {
      if (prop === "then") return undefined;
      return () => {
        throw new Error(`test context: ctx.${part}.${String(prop)} is not stubbed`);
      };
    },
  });
}

export type TestCtx = Ctx & { recorded: RecordedEvent[] };

export function createTestContext(overrides: Partial<Omit<Ctx, "config">> & { config?: Partial<ConfigInput> } = {}): TestCtx {
  const recorded: RecordedEvent[] = [];
  let n = 0;
  const { config, ...rest } = overrides;
  const cfg = defaultConfig(config ?? {});
  const clock = rest.clock ?? { now: () => Date.now() };
  return {
    config: cfg,
    clock,
    log: silentLogger,
    instance: { service: "rosey-llm", version: "0.0.0-test", id: "test-instance", started_at: Date.now() },
    events: {
      emit(name, payload, opts) {
        const id = opts?.id ?? `evt-${++n}`;
        recorded.push({ name, payload: payload as Record<string, unknown>, id });
        return id;
      },
      async flush() {},
    },
    providers: unstubbed("providers"),
    limiter: unstubbed("limiter"),
    // Write limits are real, over an in-memory bucket: handlers that write count against them.
    writes: createWriteLimiter({ kv: new MemoryKv("LIMITS"), config: cfg.limits, clock }),
    usage: unstubbed("usage"),
    memory: unstubbed("memory"),
    personas: unstubbed("personas"),
    recorded,
    ...rest,
  };
}
