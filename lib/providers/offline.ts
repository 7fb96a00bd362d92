// The offline provider: no network, deterministic. It answers a summarize prompt with an
// extractive summary of the text (./extractive: the text's own most central sentences, in
// the requested style and length), and anything else with the last user message echoed
// back, labelled "[offline]" (bounded by max_tokens), so the whole service runs and is
// testable with no API key; token counts come from the estimate in ./tokens. A summary
// carries no label: it is the caller's own text, and the reply's provider says "offline".
// Asked to stream, it sends its reply word by word.
import type { Completion, CompletionOptions, Provider } from "../context/types";
import type { Message } from "../schemas";
import { extractiveSummary } from "./extractive";
import { readSummarizePrompt } from "./summarize";
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

/** The last user message echoed back, labelled and bounded by `max_tokens`. */
function echo(messages: Message[], options: CompletionOptions): { content: string; truncated: boolean } {
  let lastUser = "";
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === "user") {
      lastUser = messages[i].content;
      break;
    }
  }
  const budget = Math.max(1, (options.max_tokens ?? 512) - estimateTokens(OFFLINE_PREFIX));
  const { text, truncated } = truncateToTokens(lastUser, budget);
  return { content: `${OFFLINE_PREFIX} ${text}`.trim(), truncated };
}

/** A text in pieces of one word each, with the spaces before it: the pieces add up to the text. */
function wordPieces(text: string): string[] {
  return text.split(/(?<=\S)(?=\s)/).filter(Boolean);
}

/** The built-in deterministic provider: summarizes summarize prompts, echoes the rest; estimated tokens. */
export function createOfflineProvider(model = "offline-echo-1", name = "offline"): Provider {
  return {
    name,
    model,
    async complete(messages: Message[], options: CompletionOptions, signal?: AbortSignal): Promise<Completion> {
      signal?.throwIfAborted();
      const started = performance.now();
      const wanted = readSummarizePrompt(messages);
      const { content, truncated } = wanted
        ? { content: extractiveSummary(wanted.text, { maxWords: wanted.max_length, style: wanted.style }), truncated: false }
        : echo(messages, options);
      if (options.onDelta) for (const piece of wordPieces(content)) options.onDelta(piece);
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
