// Every request, response and event of the wire contract, in zod. Types come from z.infer
// under the same name; the JSON Schemas of endpoint metadata and docs/contract.md (npm run
// contract) are generated from these, `.describe()` texts included: a field's meaning is
// written here, once. Requests are strict: an unknown or misspelt field is a validation
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

export const Message = z.strictObject({ role: Role, content: z.string().max(100_000) }).describe("One turn of a conversation.");
export type Message = z.infer<typeof Message>;

export const ErrorCode = z.enum([
  "validation",
  "rate_limited",
  "quota_exceeded",
  "provider_unavailable",
  "provider_error",
  "not_found",
  "payload_too_large",
  "storage_full",
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

/** Who a call counts against: limits, quotas and usage are kept per user and per channel. */
const countedUser = Name.describe("User the call counts against (limits, quotas, usage).");
const countedChannel = Name.describe("Channel the call counts against (limits, usage).");
/** Asks for the reply piece by piece as the model writes it (see StreamChunk). */
// Optional rather than defaulted, so typed requests written before it still type-check;
// absent means false, which the JSON Schema says as its default.
const stream = z
  .boolean()
  .optional()
  .meta({ default: false })
  .describe(
    "Send the reply as it is written: chunk messages (header `Rosey-Stream: chunk`) to the reply subject, then the usual reply (see Streaming under Conventions).",
  );

export const ChatRequest = z.strictObject({
  channel: Name.describe("Channel of the conversation: its history, memories and persona are used."),
  user: Name.describe("Who is speaking; counted against this user's limits and usage."),
  message: text(16_000).describe("The user's message."),
  persona: PersonaName.optional().describe("Persona for this request only, instead of the channel's."),
  stream,
});
export type ChatRequest = z.infer<typeof ChatRequest>;

export const CompleteRequest = z.strictObject({
  messages: z.array(Message).min(1).max(200).describe("The conversation to complete, oldest first."),
  temperature: Temperature.default(0.7).describe("Sampling temperature."),
  max_tokens: z.number().int().min(1).max(32_000).optional().describe("Upper bound of the reply, in tokens."),
  provider: z
    .string()
    .min(1)
    .max(64)
    .optional()
    .describe("Use only this provider, without fallback; provider_unavailable when it is down."),
  user: countedUser.optional(),
  channel: countedChannel.optional(),
  stream,
});
export type CompleteRequest = z.infer<typeof CompleteRequest>;

export const SummaryStyle = z
  .enum(["concise", "detailed", "bullets"])
  .describe("concise: one short paragraph; detailed: a longer one, keeping names and numbers; bullets: one `- ` line per point.");
export type SummaryStyle = z.infer<typeof SummaryStyle>;

export const SummarizeRequest = z.strictObject({
  text: text(200_000).describe("The text to summarize."),
  max_length: z.number().int().min(10).max(2_000).default(200).describe("Upper bound of the summary, in words."),
  style: SummaryStyle.default("concise"),
  user: countedUser.optional(),
  channel: countedChannel.optional(),
});
export type SummarizeRequest = z.infer<typeof SummarizeRequest>;

export const MemoryCategory = z.enum(["fact", "preference", "topic"]).describe("What kind of thing is remembered.");
export type MemoryCategory = z.infer<typeof MemoryCategory>;

/** Importance of a memory: ranks recall after relevance. */
const Importance = z
  .number()
  .int()
  .min(1)
  .max(5)
  .describe("1 (trivia) to 5 (essential); ranks recall after relevance, and a full channel keeps its most important memories.");

export const MemoryAddRequest = z.strictObject({
  channel: Name.describe("Channel the memory belongs to."),
  content: text(2_000).describe("What to remember."),
  category: MemoryCategory.default("fact"),
  user_id: Name.optional().describe("The user it is about; absent: channel-wide."),
  importance: Importance.default(1),
});
export type MemoryAddRequest = z.infer<typeof MemoryAddRequest>;

export const MemoryRecallRequest = z.strictObject({
  channel: Name.describe("Channel whose memories are searched."),
  query: text(2_000).describe("What to find memories about."),
  user_id: Name.optional().describe("Also this user's own memories; absent: channel-wide memories only."),
  limit: z.number().int().min(1).max(50).default(5).describe("Most memories to return."),
});
export type MemoryRecallRequest = z.infer<typeof MemoryRecallRequest>;

export const MemoryForgetRequest = z
  .strictObject({
    channel: Name.describe("Channel whose memories are forgotten."),
    id: z.string().min(1).max(64).optional().describe("Forget this one memory (not_found when there is none)."),
    user_id: Name.optional().describe("Forget all of this user's memories in the channel."),
  })
  .refine((r) => r.id !== undefined || r.user_id !== undefined, {
    message: "give id (one memory) or user_id (all of a user's memories)",
    path: ["id"],
  });
export type MemoryForgetRequest = z.infer<typeof MemoryForgetRequest>;

export const ContextResetRequest = z.strictObject({
  channel: Name.describe("Channel whose history and summaries are dropped; its memories stay."),
});
export type ContextResetRequest = z.infer<typeof ContextResetRequest>;

export const PersonaGetRequest = z.strictObject({ channel: Name.describe("Channel whose persona is returned.") });
export type PersonaGetRequest = z.infer<typeof PersonaGetRequest>;

/** Selects a persona for a channel: what plugins may do (defining one is an admin action). */
export const PersonaSetRequest = z.strictObject({
  channel: Name.describe("Channel that selects the persona."),
  persona: PersonaName.describe("A built-in or defined persona (not_found otherwise)."),
});
export type PersonaSetRequest = z.infer<typeof PersonaSetRequest>;

/** Defines or updates a persona (admin subject). */
export const PersonaDefineRequest = z.strictObject({
  name: PersonaName.describe("Name of the persona; built-in and configured ones cannot be redefined."),
  system_prompt: text(8_000).describe("The system prompt the model gets in this persona's chats."),
  description: z.string().max(500).optional().describe("One line for people choosing a persona."),
  temperature: Temperature.optional().describe("Sampling temperature of this persona's chats."),
  owner: Name.optional().describe("Who defines it (a claim, recorded and shown; not checked)."),
});
export type PersonaDefineRequest = z.infer<typeof PersonaDefineRequest>;

/** Deletes a defined persona (admin subject); channels that selected it fall back to default. */
export const PersonaDeleteRequest = z.strictObject({
  name: PersonaName.describe("A defined persona; built-in and configured ones cannot be deleted."),
});
export type PersonaDeleteRequest = z.infer<typeof PersonaDeleteRequest>;

export const PersonaListRequest = z.strictObject({
  cursor: z.string().max(20).regex(/^\d+$/, "a next_cursor of an earlier reply").optional()
    .describe("Continue a listing where the previous page ended (its next_cursor)."),
});
export type PersonaListRequest = z.infer<typeof PersonaListRequest>;
export const StatusRequest = z.strictObject({
  user: Name.optional().describe("Also say whether this user is rate limited."),
});
export type StatusRequest = z.infer<typeof StatusRequest>;

export const UsageRequest = z.strictObject({
  user: Name.optional().describe("This user's usage (takes precedence over channel)."),
  channel: Name.optional().describe("This channel's usage; neither: the whole service's."),
});
export type UsageRequest = z.infer<typeof UsageRequest>;

// ---------------------------------------------------------------- responses
// Every response parses from a bare error object {success:false, error, error_code}:
// the runtime relies on that to build error replies of the right shape.

const failure = {
  error: z.string().optional().describe("What went wrong, for people; present when success is false."),
  error_code: ErrorCode.optional().describe("What went wrong, for programs (see Errors); present when success is false."),
  retry_after: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe("Seconds until trying again is worth it (rate_limited, quota_exceeded; provider_unavailable when known)."),
};
const succeeded = z.boolean().describe("True when the request was served; false with error and error_code.");
const answeredBy = {
  provider: z.string().optional().describe("Provider that answered."),
  model: z.string().optional().describe("Model that answered."),
};

export const ChatResponse = z.object({
  success: succeeded,
  content: z.string().optional().describe('The reply; the offline provider\'s starts with "[offline]".'),
  tokens_used: z
    .number()
    .int()
    .min(0)
    .default(0)
    .describe("Prompt and reply tokens of the call (estimated when the provider reports none)."),
  ...answeredBy,
  persona: z.string().optional().describe("Persona the chat used."),
  ...failure,
});
export type ChatResponse = z.input<typeof ChatResponse>;

/**
 * The header that marks a chunk message of a streamed reply: `Rosey-Stream: chunk`. The
 * final reply (or error) of the same request carries no such header.
 */
export const STREAM_HEADER = { name: "Rosey-Stream", chunk: "chunk" } as const;

export const StreamChunk = z
  .object({
    delta: z.string().min(1).describe("The next piece of the reply's content: the chunks, in index order, add up to the final reply's content."),
    index: z.number().int().min(0).describe("Position of the chunk in its reply: 0, 1, 2…"),
  })
  .describe("A piece of a reply being written, sent to the reply subject of a request with `stream: true`.");
export type StreamChunk = z.infer<typeof StreamChunk>;

export const SummaryResponse = z.object({
  success: succeeded,
  summary: z
    .string()
    .optional()
    .describe("At most max_length words; in the bullets style one `- ` line per point. Offline: sentences of the text itself."),
  tokens_used: z.number().int().min(0).optional().describe("Prompt and summary tokens of the call."),
  ...answeredBy,
  ...failure,
});
export type SummaryResponse = z.input<typeof SummaryResponse>;

export const Memory = z.object({
  id: z.string().describe("Stable id: memory_forget takes it."),
  channel: z.string(),
  user_id: z.string().nullable().describe("The user it is about; null: channel-wide."),
  category: MemoryCategory,
  content: z.string(),
  importance: Importance,
  created_at: z.string().describe("ISO-8601 time it was first added."),
  last_accessed: z.string().describe("ISO-8601 time it was last added or recalled."),
});
export type Memory = z.infer<typeof Memory>;

/** A memory without its content: what `items` carries beside `memories`. */
export const MemoryItem = Memory.omit({ content: true });
export type MemoryItem = z.infer<typeof MemoryItem>;

export const MemoryResponse = z.object({
  success: succeeded,
  memories: z.array(z.string()).default([]).describe("Contents of the memories added or recalled, best first."),
  count: z.number().int().min(0).default(0).describe("How many memories were added, recalled or forgotten (returned, for recall)."),
  items: z
    .array(MemoryItem)
    .optional()
    .describe("Id, scope and dates of each memory in `memories`, in the same order (the content is sent once, there)."),
  truncated: z.boolean().optional().describe("True when fewer memories than asked were returned so the reply fits in a NATS message."),
  ...failure,
});
export type MemoryResponse = z.input<typeof MemoryResponse>;

export const OkResponse = z.object({ success: succeeded, ...failure });
export type OkResponse = z.input<typeof OkResponse>;

export const Persona = z.object({
  name: z.string(),
  description: z.string(),
  system_prompt: z.string(),
  temperature: z.number().optional().describe("Sampling temperature of its chats; absent: the default."),
  builtin: z.boolean().optional().describe("True for built-in and configured personas, which cannot be redefined or deleted."),
  owner: z.string().optional().describe("Who defined it (persona_define's owner), for defined personas that named one."),
});
export type Persona = z.infer<typeof Persona>;

export const PersonaResponse = z.object({
  success: succeeded,
  persona: Persona.optional().describe("The channel's persona (get, select) or the persona defined."),
  ...failure,
});
export type PersonaResponse = z.input<typeof PersonaResponse>;

export const PersonaListResponse = z.object({
  success: succeeded,
  personas: z.array(Persona).default([]).describe("Built-in, configured and defined personas: one page that fits in a NATS message."),
  next_cursor: z.string().optional().describe("Present when more personas follow: pass it as cursor for the next page."),
  ...failure,
});
export type PersonaListResponse = z.input<typeof PersonaListResponse>;

export const ProviderStatus = z.object({
  name: z.string(),
  model: z.string(),
  healthy: z.boolean().describe("False while cooling down after repeated failures."),
  last_error: z.string().optional().describe("The last failure: provider, kind and HTTP status (the upstream text is only logged)."),
  cooldown_until: z.string().optional().describe("While unhealthy: ISO-8601 time it is tried again."),
  consecutive_failures: z.number().int().min(0).optional(),
});
export type ProviderStatus = z.infer<typeof ProviderStatus>;

export const StatusResponse = z.object({
  success: succeeded.default(true),
  healthy: z.boolean().default(false).describe("At least one provider of the chain is healthy."),
  provider: z.string().default("").describe("Provider a call would go to now."),
  model: z.string().default("").describe("Its model."),
  requests_today: z.number().int().min(0).default(0).describe("The whole service's requests today (ROSEY_TIMEZONE)."),
  tokens_today: z.number().int().min(0).default(0).describe("The whole service's tokens today."),
  rate_limited: z
    .boolean()
    .default(false)
    .describe("The global daily token budget is spent, or (with user) that user is limited now."),
  version: z.string().default("").describe("Version of the answering instance."),
  uptime_seconds: z.number().min(0).default(0).describe("Seconds since the answering instance started."),
  instance: z.string().optional().describe("Id of the answering instance (its micro service id)."),
  providers: z.array(ProviderStatus).default([]).describe("Every provider of the chain, in order."),
  embeddings: ProviderStatus.optional().describe("The embeddings server recall uses, when one is configured (name `embeddings`)."),
  ...failure,
});
export type StatusResponse = z.input<typeof StatusResponse>;

export const RateLimitsRemaining = z
  .object({
    per_minute: z.number().int(),
    per_hour: z.number().int(),
    per_day: z.number().int(),
    tokens_today: z.number().int(),
  })
  .describe("What is left of the user's limits now; -1: no limit applies (an exempt user).");
export type RateLimitsRemaining = z.infer<typeof RateLimitsRemaining>;

export const UsageResponse = z.object({
  success: succeeded,
  user: z.string().optional(),
  channel: z.string().optional(),
  requests_today: z.number().int().min(0).default(0).describe("Today's requests of the user, else the channel, else the service."),
  tokens_today: z.number().int().min(0).default(0).describe("Today's tokens, likewise."),
  rate_limits_remaining: RateLimitsRemaining.optional(),
  provider: z.string().optional().describe("The provider a call would go to now."),
  by_provider: z
    .record(z.string(), z.object({ requests: z.number().int(), tokens: z.number().int() }))
    .optional()
    .describe("Today's figures split by provider name."),
  ...failure,
});
export type UsageResponse = z.input<typeof UsageResponse>;

// ---------------------------------------------------------------- events

export const ResponseEvent = z.object({
  channel: z.string().nullable(),
  user: z.string().nullable(),
  prompt_length: z.number().int().min(0).describe("Characters of the prompt."),
  response_length: z.number().int().min(0).describe("Characters of the reply."),
  tokens_used: z.number().int().min(0),
  provider: z.string(),
  latency_ms: z.number().int().min(0).describe("Whole milliseconds of the whole request: admission, context, provider fallback, recording."),
  model: z.string(),
  persona: z.string().optional(),
  endpoint: z.string().optional().describe("Endpoint that made the call."),
});
export type ResponseEvent = z.infer<typeof ResponseEvent>;

export const ErrorEvent = z.object({
  channel: z.string().nullable(),
  user: z.string().nullable(),
  error: z.string(),
  provider: z.string().nullable().describe("Provider that failed; null when none was called."),
  error_type: z.enum(["provider_error", "rate_limit", "quota", "validation"]),
  endpoint: z.string().optional(),
});
export type ErrorEvent = z.infer<typeof ErrorEvent>;

export const MemoryEvent = z.object({
  channel: z.string(),
  action: z.enum(["add", "recall", "forget"]),
  user_id: z.string().nullable(),
  memory_count: z.number().int().min(0).describe("How many memories the action touched."),
});
export type MemoryEvent = z.infer<typeof MemoryEvent>;

export const SummarizedEvent = z.object({
  channel: z.string(),
  message_count: z.number().int().min(0).describe("History messages the summary replaced."),
  summary_length: z.number().int().min(0).describe("Characters of the summary."),
});
export type SummarizedEvent = z.infer<typeof SummarizedEvent>;

export const ThresholdEvent = z.object({
  user: z.string().nullable(),
  channel: z.string().nullable(),
  threshold_type: z.enum(["daily", "hourly", "tokens"]),
  current: z.number().int().min(0).describe("Count reached: requests, or tokens for `tokens`."),
  limit: z.number().int().min(0),
  period: z.string().optional().describe("The window it happened in: its day, or its hour's start."),
  scope: z.enum(["user", "channel", "global"]).optional().describe("Whose limit: the user's, the channel's or the service's."),
});
export type ThresholdEvent = z.infer<typeof ThresholdEvent>;

/** Event name (the subject after `<prefix>.event.llm.`) → payload schema, described by when it is published. */
export const EventPayloads = {
  response: ResponseEvent.describe("A model call answered (chat, complete, summarize)."),
  error: ErrorEvent.describe("A chat, complete or summarize request failed: provider, limit, quota or validation."),
  memory: MemoryEvent.describe("Memories were added, recalled or forgotten."),
  summarized: SummarizedEvent.describe("A channel's oldest history was summarized."),
  "usage.threshold": ThresholdEvent.describe(
    "A limit or quota passed its threshold (ROSEY_THRESHOLD); once per user or channel, type and period.",
  ),
} as const;
export type EventName = keyof typeof EventPayloads;
export type EventPayload<N extends EventName> = z.infer<(typeof EventPayloads)[N]>;

export const EventEnvelope = z.object({
  event: z.enum(Object.keys(EventPayloads) as [EventName, ...EventName[]]).describe("The subject after `<prefix>.event.llm.`."),
  version: z.literal(1).describe("Envelope version."),
  id: z.string().min(1).describe("Unique id, also the Nats-Msg-Id: a retried publish is stored once."),
  timestamp: z.iso.datetime().describe("ISO-8601 UTC time of the event."),
  source: z.object({ service: z.string(), instance: z.string() }).describe("Service name and id of the instance that published it."),
});
export type EventEnvelope = z.infer<typeof EventEnvelope>;
