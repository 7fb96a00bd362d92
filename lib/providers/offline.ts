// The offline provider: no network, deterministic, clearly labelled. It answers with the
// last user message echoed back (bounded by max_tokens), so the whole service runs and is
// testable with no API key; token counts come from the estimate in ./tokens.
import type { Completion, CompletionOptions, Provider } from "../context/types";
import type { Message } from "../schemas";
import { estimateMessagesTokens, estimateTokens } from "./tokens";

export const OFFLINE_PREFIX = "[offline]";

/** Keeps whole words of `text` while their estimated tokens fit `budget`. */
export function truncateToTokens(text: string, budget: number): { text: string; truncated: boolean } {
  const words = text.split(/\s+/).filter(Boolean);
  const kept: string[] = [];
  let used = 0;
  for (const w of words) {
    const t = estimateTokens(w);
    if (used + t > budget) return { text: kept.join(" "), truncated: true };
    kept.push(w);
    used += t;
  }
  return { text: kept.join(" "), truncated: false };
}

/** The built-in deterministic provider: echoes the last user message, labelled, with estimated tokens. */
export function createOfflineProvider(model = "offline-echo-1", name = "offline"): Provider {
  return {
    name,
    model,
    async complete(messages: Message[], options: CompletionOptions, signal?: AbortSignal): Promise<Completion> {
      signal?.throwIfAborted();
      const started = performance.now();
      let lastUser = "";
      for (let i = messages.length - 1; i >= 0; i--) {
        if (messages[i].role === "user") {
          lastUser = messages[i].content;
          break;
        }
      }
      const budget = Math.max(1, (options.max_tokens ?? 512) - estimateTokens(OFFLINE_PREFIX));
      const { text, truncated } = truncateToTokens(lastUser, budget);
      const content = `${OFFLINE_PREFIX} ${text}`.trim();
      const prompt = estimateMessagesTokens(messages);
      const completion = estimateTokens(content);
      return {
        content,
        tokens: { prompt, completion, total: prompt + completion },
        tokens_reported: false,
        provider: name,
        model,
        finish_reason: truncated ? "length" : "stop",
        latency_ms: performance.now() - started,
      };
    },
  };
}
