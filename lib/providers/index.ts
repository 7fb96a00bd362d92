// Public surface of the provider layer. How a provider talks to its server (./http.ts) stays inside.
export { createProviders } from "./registry";
export { createOpenAIProvider, mapChatResponse, type OpenAIProviderOptions } from "./openai";
export { createEmbedder, mapEmbeddings, refusedText, unitVector, type Embedder, type EmbedderDeps, type EmbeddingPurpose } from "./embeddings";
export { createOfflineProvider, OFFLINE_PREFIX, truncateToTokens } from "./offline";
export { estimateMessagesTokens, estimateTokens } from "./tokens";
export { classifyFailure, parseRetryAfter, redactSecrets, statusKind, ProviderFailure, isProviderFailure, type FailureInput } from "./errors";
export { Health, type HealthSnapshot, type HealthState } from "./health";
export { backoffDelay, DEFAULT_BACKOFF } from "./retry";
export { limitWords, readSummarizePrompt, summarizePrompt, SUMMARY_TEMPERATURE } from "./summarize";
export { extractiveSummary, type ExtractiveOptions } from "./extractive";
export type { BackoffOptions, DeadlineProvider, FailureInfo, FailureKind, FailureReason, ProvidersDeps } from "./types";
