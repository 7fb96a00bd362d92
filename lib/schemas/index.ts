// Every request, response and event of the wire contract (DESIGN.md), in zod.
// Types come from z.infer under the same name; JSON Schemas for endpoint metadata come
// from z.toJSONSchema. Requests are strict: an unknown or misspelt field is a validation
// error rather than silently ignored.
import { z } from "zod";

/** User and channel names: any UTF-8 text of 1–200 characters without control characters. */
export const Name = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^\p{Cc}]*$/u, "must not contain control characters");
export type Name = z.infer<typeof Name>;

/** Free text sent to a model; bounded so one request cannot exhaust memory or a context window. */
const text = (max: number) => z.string().min(1).max(max);

export const Role = z.enum(["system", "user", "assistant"]);
export type Role = z.infer<typeof Role>;

export const Message = z.strictObject({ role: Role, content: z.string().max(100_000) });
export type Message = z.infer<typeof Message>;

export const ErrorCode = z.enum([
  "validation",
  "rate_limited",
  "quota_exceeded",
  "provider_unavailable",
  "provider_error",
  "not_found",
  "payload_too_large",
  "internal",
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** Persona names go into KV keys (encoded) and prompts; keep them short identifiers. */
export const PersonaName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9_-]*$/, "lowercase letters, digits, '-' and '_'");
export type PersonaName = z.infer<typeof PersonaName>;

export const Temperature = z.number().min(0).max(2);

// ---------------------------------------------------------------- requests

export const ChatRequest = z.strictObject({
  channel: Name,
  user: Name,
  message: text(16_000),
  persona: PersonaName.optional(),
});
export type ChatRequest = z.infer<typeof ChatRequest>;

export const CompleteRequest = z.strictObject({
  messages: z.array(Message).min(1).max(200),
  temperature: Temperature.default(0.7),
  max_tokens: z.number().int().min(1).max(32_000).optional(),
  provider: z.string().min(1).max(64).optional(),
  user: Name.optional(),
  channel: Name.optional(),
});
export type CompleteRequest = z.infer<typeof CompleteRequest>;

export const SummaryStyle = z.enum(["concise", "detailed", "bullets"]);
export type SummaryStyle = z.infer<typeof SummaryStyle>;

export const SummarizeRequest = z.strictObject({
  text: text(200_000),
  max_length: z.number().int().min(10).max(2_000).default(200),
  style: SummaryStyle.default("concise"),
  user: Name.optional(),
  channel: Name.optional(),
});
export type SummarizeRequest = z.infer<typeof SummarizeRequest>;

export const MemoryCategory = z.enum(["fact", "preference", "topic"]);
export type MemoryCategory = z.infer<typeof MemoryCategory>;

export const MemoryAddRequest = z.strictObject({
  channel: Name,
  content: text(2_000),
  category: MemoryCategory.default("fact"),
  user_id: Name.optional(),
  importance: z.number().int().min(1).max(5).default(1),
});
export type MemoryAddRequest = z.infer<typeof MemoryAddRequest>;

export const MemoryRecallRequest = z.strictObject({
  channel: Name,
  query: text(2_000),
  user_id: Name.optional(),
  limit: z.number().int().min(1).max(50).default(5),
});
export type MemoryRecallRequest = z.infer<typeof MemoryRecallRequest>;

export const MemoryForgetRequest = z
  .strictObject({
    channel: Name,
    id: z.string().min(1).max(64).optional(),
    user_id: Name.optional(),
  })
  .refine((r) => r.id !== undefined || r.user_id !== undefined, {
    message: "give id (one memory) or user_id (all of a user's memories)",
    path: ["id"],
  });
export type MemoryForgetRequest = z.infer<typeof MemoryForgetRequest>;

export const ContextResetRequest = z.strictObject({ channel: Name });
export type ContextResetRequest = z.infer<typeof ContextResetRequest>;

export const PersonaGetRequest = z.strictObject({ channel: Name });
export type PersonaGetRequest = z.infer<typeof PersonaGetRequest>;

/** Selects a persona for a channel. Union branches carry a title: validation messages name the form by it. */
export const PersonaSelect = z
  .strictObject({ channel: Name, persona: PersonaName })
  .meta({ title: "select", description: "Selects a persona for a channel." });
/** Defines or updates an operator persona. */
export const PersonaDefine = z
  .strictObject({
    name: PersonaName,
    system_prompt: text(8_000),
    description: z.string().max(500).optional(),
    temperature: Temperature.optional(),
  })
  .meta({ title: "define", description: "Defines or updates a persona." });
export const PersonaSetRequest = z.union([PersonaSelect, PersonaDefine]);
export type PersonaSetRequest = z.infer<typeof PersonaSetRequest>;

export const Empty = z.strictObject({});
export const PersonaListRequest = Empty;
export type PersonaListRequest = z.infer<typeof PersonaListRequest>;
export const StatusRequest = z.strictObject({ user: Name.optional() });
export type StatusRequest = z.infer<typeof StatusRequest>;

export const UsageRequest = z.strictObject({ user: Name.optional(), channel: Name.optional() });
export type UsageRequest = z.infer<typeof UsageRequest>;

// ---------------------------------------------------------------- responses
// Every response parses from a bare error object {success:false, error, error_code}:
// the runtime relies on that to build error replies of the right shape.

const failure = {
  error: z.string().optional(),
  error_code: ErrorCode.optional(),
  retry_after: z.number().int().min(0).optional(),
};

export const ChatResponse = z.object({
  success: z.boolean(),
  content: z.string().optional(),
  tokens_used: z.number().int().min(0).default(0),
  provider: z.string().optional(),
  model: z.string().optional(),
  persona: z.string().optional(),
  ...failure,
});
export type ChatResponse = z.input<typeof ChatResponse>;

export const SummaryResponse = z.object({
  success: z.boolean(),
  summary: z.string().optional(),
  tokens_used: z.number().int().min(0).optional(),
  provider: z.string().optional(),
  model: z.string().optional(),
  ...failure,
});
export type SummaryResponse = z.input<typeof SummaryResponse>;

export const Memory = z.object({
  id: z.string(),
  channel: z.string(),
  user_id: z.string().nullable(),
  category: MemoryCategory,
  content: z.string(),
  importance: z.number().int().min(1).max(5),
  created_at: z.string(),
  last_accessed: z.string(),
});
export type Memory = z.infer<typeof Memory>;

export const MemoryResponse = z.object({
  success: z.boolean(),
  memories: z.array(z.string()).default([]),
  count: z.number().int().min(0).default(0),
  items: z.array(Memory).optional(),
  ...failure,
});
export type MemoryResponse = z.input<typeof MemoryResponse>;

export const OkResponse = z.object({ success: z.boolean(), ...failure });
export type OkResponse = z.input<typeof OkResponse>;

export const Persona = z.object({
  name: z.string(),
  description: z.string(),
  system_prompt: z.string(),
  temperature: z.number().optional(),
  builtin: z.boolean().optional(),
});
export type Persona = z.infer<typeof Persona>;

export const PersonaResponse = z.object({ success: z.boolean(), persona: Persona.optional(), ...failure });
export type PersonaResponse = z.input<typeof PersonaResponse>;

export const PersonaListResponse = z.object({
  success: z.boolean(),
  personas: z.array(Persona).default([]),
  ...failure,
});
export type PersonaListResponse = z.input<typeof PersonaListResponse>;

export const ProviderStatus = z.object({
  name: z.string(),
  model: z.string(),
  healthy: z.boolean(),
  last_error: z.string().optional(),
  cooldown_until: z.string().optional(),
  consecutive_failures: z.number().int().min(0).optional(),
});
export type ProviderStatus = z.infer<typeof ProviderStatus>;

export const StatusResponse = z.object({
  success: z.boolean().default(true),
  healthy: z.boolean().default(false),
  provider: z.string().default(""),
  model: z.string().default(""),
  requests_today: z.number().int().min(0).default(0),
  tokens_today: z.number().int().min(0).default(0),
  rate_limited: z.boolean().default(false),
  version: z.string().default(""),
  uptime_seconds: z.number().min(0).default(0),
  instance: z.string().optional(),
  providers: z.array(ProviderStatus).default([]),
  ...failure,
});
export type StatusResponse = z.input<typeof StatusResponse>;

export const RateLimitsRemaining = z.object({
  per_minute: z.number().int(),
  per_hour: z.number().int(),
  per_day: z.number().int(),
  tokens_today: z.number().int(),
});
export type RateLimitsRemaining = z.infer<typeof RateLimitsRemaining>;

export const UsageResponse = z.object({
  success: z.boolean(),
  user: z.string().optional(),
  channel: z.string().optional(),
  requests_today: z.number().int().min(0).default(0),
  tokens_today: z.number().int().min(0).default(0),
  rate_limits_remaining: RateLimitsRemaining.optional(),
  by_provider: z.record(z.string(), z.object({ requests: z.number().int(), tokens: z.number().int() })).optional(),
  ...failure,
});
export type UsageResponse = z.input<typeof UsageResponse>;

// ---------------------------------------------------------------- events

export const ResponseEvent = z.object({
  channel: z.string().nullable(),
  user: z.string().nullable(),
  prompt_length: z.number().int().min(0),
  response_length: z.number().int().min(0),
  tokens_used: z.number().int().min(0),
  provider: z.string(),
  latency_ms: z.number().min(0),
  model: z.string(),
  persona: z.string().optional(),
  endpoint: z.string().optional(),
});
export type ResponseEvent = z.infer<typeof ResponseEvent>;

export const ErrorEvent = z.object({
  channel: z.string().nullable(),
  user: z.string().nullable(),
  error: z.string(),
  provider: z.string().nullable(),
  error_type: z.enum(["provider_error", "rate_limit", "quota", "validation"]),
  endpoint: z.string().optional(),
});
export type ErrorEvent = z.infer<typeof ErrorEvent>;

export const MemoryEvent = z.object({
  channel: z.string(),
  action: z.enum(["add", "recall", "forget"]),
  user_id: z.string().nullable(),
  memory_count: z.number().int().min(0),
});
export type MemoryEvent = z.infer<typeof MemoryEvent>;

export const SummarizedEvent = z.object({
  channel: z.string(),
  message_count: z.number().int().min(0),
  summary_length: z.number().int().min(0),
});
export type SummarizedEvent = z.infer<typeof SummarizedEvent>;

export const ThresholdEvent = z.object({
  user: z.string().nullable(),
  channel: z.string().nullable(),
  threshold_type: z.enum(["daily", "hourly", "tokens"]),
  current: z.number().int().min(0),
  limit: z.number().int().min(0),
  period: z.string().optional(),
  scope: z.enum(["user", "channel", "global"]).optional(),
});
export type ThresholdEvent = z.infer<typeof ThresholdEvent>;

/** Event name (the subject after `<prefix>.event.llm.`) → payload schema. */
export const EventPayloads = {
  response: ResponseEvent,
  error: ErrorEvent,
  memory: MemoryEvent,
  summarized: SummarizedEvent,
  "usage.threshold": ThresholdEvent,
} as const;
export type EventName = keyof typeof EventPayloads;
export type EventPayload<N extends EventName> = z.infer<(typeof EventPayloads)[N]>;

export const EventEnvelope = z.object({
  event: z.enum(Object.keys(EventPayloads) as [EventName, ...EventName[]]),
  version: z.literal(1),
  id: z.string().min(1),
  timestamp: z.iso.datetime(),
  source: z.object({ service: z.string(), instance: z.string() }),
});
export type EventEnvelope = z.infer<typeof EventEnvelope>;
