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

/** The general estimate: Unicode classes through regular expressions. */
export function estimateTokensUnicode(text: string): number {
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

/**
 * The same estimate for ASCII text in one pass over the character codes, or -1 at the
 * first non-ASCII character. Chat text is mostly ASCII and the regular expressions were a
 * visible share of a chat's CPU. In ASCII, \p{L} is A-Z a-z (all Latin), \p{N} is 0-9, and
 * \s is tab, line feed, vertical tab, form feed, carriage return and space; every other
 * code (punctuation, symbols, control characters) is a piece of its own.
 */
export function estimateTokensAscii(text: string): number {
  let n = 0;
  let run = 0; // length of the current letter or digit run
  let digits = false; // whether that run is digits
  const end = () => {
    if (run > 0) n += digits ? Math.ceil(run / 3) : Math.ceil(run / 4);
    run = 0;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 127) return -1;
    const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
    const digit = c >= 48 && c <= 57;
    if (letter || digit) {
      // A letter run and a digit run are separate pieces even when adjacent ("abc123").
      if (run > 0 && digit !== digits) end();
      digits = digit;
      run++;
      continue;
    }
    end();
    if (!(c === 32 || (c >= 9 && c <= 13))) n += 1;
  }
  end();
  return n;
}

/** Estimated token count of a text. */
export function estimateTokens(text: string): number {
  const n = estimateTokensAscii(text);
  return n >= 0 ? n : estimateTokensUnicode(text);
}

/**
 * Token estimates of frozen messages. memory.context() hands out the same frozen message
 * objects for a channel's prompt, summaries and history on every chat, and each chat's
 * reservation and offline reply estimate its whole prompt; a frozen message cannot change,
 * so its count is kept (weakly: it goes with the message). Other messages are estimated
 * every time.
 */
const frozenEstimates = new WeakMap<object, number>();

/** Estimated tokens of one message's content. */
function messageTokens(m: { content: string }): number {
  if (!Object.isFrozen(m)) return estimateTokens(m.content);
  let n = frozenEstimates.get(m);
  if (n === undefined) frozenEstimates.set(m, (n = estimateTokens(m.content)));
  return n;
}

/** Estimated prompt tokens of a chat: content plus ~4 tokens of framing per message, plus 3 for the reply primer. */
export function estimateMessagesTokens(messages: ReadonlyArray<{ content: string }>): number {
  let n = 3;
  for (const m of messages) n += 4 + messageTokens(m);
  return n;
}
