// Token estimate used when a provider reports no usage, for reservations before a call,
// and by the offline provider.
//
// It approximates a BPE tokenizer (cl100k/o200k family) without shipping one: text is cut
// into words, numbers, single punctuation marks and other symbols as such tokenizers
// pre-split it; a word costs one token per 4 characters (rounded up), a digit run one per 3,
// each punctuation mark or non-Latin character one. On English prose this lands within
// ~10-15 % of cl100k and errs high on code and non-Latin scripts, which is the safe side
// for quota reservations.
const PIECE = /\p{L}+|\p{N}+|[^\s\p{L}\p{N}]/gu;

/** Estimated token count of a text. */
export function estimateTokens(text: string): number {
  let n = 0;
  for (const m of text.matchAll(PIECE)) {
    const s = m[0];
    if (/^\p{N}/u.test(s)) n += Math.ceil(s.length / 3);
    else if (/^[\p{Script=Latin}]+$/u.test(s)) n += Math.ceil(s.length / 4);
    else if (/^\p{L}/u.test(s)) n += s.length;
    else n += 1;
  }
  return n;
}

/** Estimated prompt tokens of a chat: content plus ~4 tokens of framing per message, plus 3 for the reply primer. */
export function estimateMessagesTokens(messages: ReadonlyArray<{ content: string }>): number {
  let n = 3;
  for (const m of messages) n += 4 + estimateTokens(m.content);
  return n;
}
