// Extractive summaries: no model, only the text's own sentences. The offline provider
// answers summarize with it, and history summarization falls back to it when the provider
// fails.
//
// Sentences are scored by how central they are: a content word (not a stop word) that
// recurs across the text is what the text is about, so a sentence scores the sum of how
// often each of its distinct content words occurs elsewhere, divided by the square root of
// its length (long sentences would otherwise win by size). The opening sentence, which
// usually states the subject, gets a small bonus; very short fragments a penalty. The best
// sentences that fit `maxWords` are kept (never one sharing no word with the rest) and
// printed in their original order; when not even one fits, the best is cut to the limit.
import type { SummaryStyle } from "../schemas";

export interface ExtractiveOptions {
  /** Upper bound of the summary in words (list markers do not count). */
  maxWords: number;
  /** concise: one short paragraph; detailed: a longer one; bullets: one `- ` line per sentence. */
  style?: SummaryStyle;
}

/** Share of the text's sentences each style keeps at most (always at least one). */
const SHARE: Record<SummaryStyle, number> = { concise: 0.25, bullets: 0.4, detailed: 0.6 };

/** Words too common to say what a text is about (English; other languages count every word). */
const STOP = new Set(
  (
    "a an and are as at be been but by can could did do does for from had has have he her his how i if in into is it its " +
    "me my no not of on or our she so than that the their them then there these they this to too us was we were what " +
    "when where which who why will with would you your also just about after all any before more most other over some " +
    "such only own same very said says one two up out"
  ).split(" "),
);

/** Splits text into sentences: at line breaks, and after `.`, `!` or `?` followed by a space. */
export function sentences(text: string): string[] {
  return text
    .split(/\r?\n/)
    .flatMap((line) => line.replace(/^\s*(?:[-*•·–]|\d{1,3}[.)])\s+/, "").split(/(?<=[.!?…。！？])\s+/))
    .map((s) => s.trim())
    .filter((s) => /[\p{L}\p{N}]/u.test(s));
}

const wordsOf = (s: string) => s.split(/\s+/).filter(Boolean);
/** Lower-cased words without a possessive `'s`, stop words and single letters left out. */
const contentWords = (s: string) =>
  (s.toLowerCase().match(/[\p{L}\p{N}][\p{L}\p{N}'’-]*/gu) ?? [])
    .map((w) => w.replace(/['’]s$/, ""))
    .filter((w) => !STOP.has(w) && w.length > 1);

/** Scores every sentence (see the header); higher is more central. */
export function scoreSentences(list: string[]): number[] {
  const tf = new Map<string, number>();
  const terms = list.map((s) => new Set(contentWords(s)));
  for (const t of terms) for (const w of t) tf.set(w, (tf.get(w) ?? 0) + 1);
  return list.map((s, i) => {
    let shared = 0;
    for (const w of terms[i]) shared += tf.get(w)! - 1;
    const length = wordsOf(s).length;
    let score = shared / Math.sqrt(Math.max(1, terms[i].size));
    if (i === 0) score += 0.5;
    if (length < 4) score *= 0.5;
    return score;
  });
}

/** Cuts a sentence to `n` words. */
const cut = (s: string, n: number) => wordsOf(s).slice(0, n).join(" ");

/** An extractive summary of `text` in at most `maxWords` words, in the requested style. */
export function extractiveSummary(text: string, opts: ExtractiveOptions): string {
  const style = opts.style ?? "concise";
  const budget = Math.max(1, Math.floor(opts.maxWords));
  const seen = new Set<string>();
  const list = sentences(text).filter((s) => !seen.has(s) && seen.add(s));
  if (list.length === 0) return "";
  const scores = scoreSentences(list);
  const ranked = list.map((_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
  const most = Math.max(1, Math.ceil(list.length * SHARE[style]));

  const kept: number[] = [];
  let left = budget;
  for (const i of ranked) {
    // A sentence that shares no word with the rest says nothing about what the text is about.
    if (kept.length === most || left === 0 || scores[i] <= 0) break;
    const n = wordsOf(list[i]).length;
    if (n <= left) {
      kept.push(i);
      left -= n;
    }
  }
  // Not one sentence fits: the most central one, cut to the budget.
  const parts = kept.length ? kept.sort((a, b) => a - b).map((i) => list[i]) : [cut(list[ranked[0]], budget)];
  return style === "bullets" ? parts.map((p) => `- ${p}`).join("\n") : parts.join(" ");
}
