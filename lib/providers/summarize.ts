// The summarize prompts (kept from the seed) and the word bound applied to the model's
// output: a model asked for 200 words may still write 260, the caller asked for 200.
// readSummarizePrompt turns such a prompt back into its request, for the offline provider,
// which answers it with an extractive summary instead of an echo.
import type { Message, SummaryStyle } from "../schemas";

/** Sampling temperature of every summary: low, so summaries stay faithful to the text. */
export const SUMMARY_TEMPERATURE = 0.3;

const SYSTEM = "You summarize text faithfully. Reply with the summary only, without a preamble.";

/** The instruction line of the user prompt for each style; `n` is the word limit. The text follows a blank line. */
const PROMPTS: Record<SummaryStyle, (n: number) => string> = {
  concise: (n) => `Summarize in ${n} words or less:`,
  detailed: (n) =>
    `Write a detailed summary of the following text in ${n} words or less, keeping the key details, names and numbers:`,
  bullets: (n) =>
    `Summarize the following text as bullet points, one per line starting with "- ", ${n} words or less in total:`,
};

/** Messages, temperature and a token cap for summarizing `text` in at most `max_length` words. */
export function summarizePrompt(
  text: string,
  max_length: number,
  style: SummaryStyle = "concise",
): { messages: Message[]; temperature: number; max_tokens: number } {
  return {
    messages: [
      { role: "system", content: SYSTEM },
      { role: "user", content: `${PROMPTS[style](max_length)}\n\n${text}` },
    ],
    temperature: SUMMARY_TEMPERATURE,
    // ~1.3 tokens per English word, doubled for other scripts and bullet markup, plus
    // slack so the model is cut by limitWords (at a word) rather than by max_tokens (mid-word).
    max_tokens: Math.ceil(max_length * 2) + 16,
  };
}

/** The request a summarizePrompt was made from, or undefined for any other conversation. */
export function readSummarizePrompt(
  messages: Message[],
): { text: string; max_length: number; style: SummaryStyle } | undefined {
  if (messages.length !== 2 || messages[0].content !== SYSTEM || messages[1].role !== "user") return undefined;
  const content = messages[1].content;
  const split = content.indexOf("\n\n");
  const head = content.slice(0, split);
  const max_length = Number(/\d+/.exec(head)?.[0]);
  const style = (Object.keys(PROMPTS) as SummaryStyle[]).find((s) => PROMPTS[s](max_length) === head);
  return split > 0 && style ? { text: content.slice(split + 2), max_length, style } : undefined;
}

/** A list marker, not a word: "-", "*", "•", "1.", "2)". */
const MARKER = /^([-*•·–]|\d{1,3}[.)])$/;

/**
 * Bounds `text` to `max` words, cutting at a word boundary. Line breaks survive (so bullet
 * lists stay lists); list markers do not count as words; spaces inside a line collapse.
 */
export function limitWords(text: string, max: number): string {
  const out: string[] = [];
  let left = Math.max(0, max);
  for (const line of text.trim().split(/\r?\n/)) {
    if (left === 0) break;
    const kept: string[] = [];
    for (const token of line.trim().split(/\s+/).filter(Boolean)) {
      const isWord = !(kept.length === 0 && MARKER.test(token));
      if (isWord && left === 0) break;
      kept.push(token);
      if (isWord) left--;
    }
    out.push(kept.join(" "));
  }
  return out.join("\n").replace(/\n{3,}/g, "\n\n").trim();
}
