// Text analysis for memory recall: tokens, light stemming and stop words.
//
// The same pipeline runs over stored memories and over queries, so a stem only has to be
// consistent, not linguistically right: "likes", "liked", "liking" and "like" all become
// "lik". lib/memory/synonyms.txt is keyed by these stems: after changing stem(), run
// `npm run synonyms`. Han, Hiragana and Katakana are indexed per character because those scripts do
// not separate words with spaces.

/** English function words that carry no meaning for recall. */
export const STOP_WORDS: ReadonlySet<string> = new Set(
  (
    "a about above after again against all am an and any are as at be because been before being below " +
    "between both but by can could did do does doing down during each few for from further had has have " +
    "having he her here hers herself him himself his how i if in into is it its itself just me more most my " +
    "myself no nor not now of off on once only or other our ours ourselves out over own same she should so " +
    "some such than that the their theirs them themselves then there these they this those through to too " +
    "under until up very was we were what when where which while who whom why will with would you your " +
    "yours yourself yourselves s t d ll m re ve don doesn didn isn wasn aren weren won wouldn shouldn couldn " +
    "also really please remember"
  ).split(" "),
);

const WORD = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]|[\p{L}\p{N}]+/gu;
const LATIN = /^[a-z]+$/;
const VOWEL = /[aeiouy]/;

/** Reduces an English word to a crude stem; other words pass unchanged. */
export function stem(word: string): string {
  if (word.length <= 3 || !LATIN.test(word)) return word;
  let w = word;
  if (w.endsWith("ies") && w.length > 4) w = w.slice(0, -3) + "y";
  else if (w.endsWith("sses")) w = w.slice(0, -2);
  else if (/(x|ch|sh|z)es$/.test(w)) w = w.slice(0, -2);
  else if (w.endsWith("s") && !/(ss|us|is)$/.test(w)) w = w.slice(0, -1);

  // -ing / -ed only when a syllable remains ("sing", "need" stay whole).
  for (const suffix of ["ing", "ed"]) {
    if (w.endsWith(suffix) && !w.endsWith("eed")) {
      const base = w.slice(0, -suffix.length);
      if (base.length >= 3 && VOWEL.test(base)) {
        w = base;
        // "running" → "runn" → "run"; keep ll/ss/zz as in "spelled", "missed".
        if (/([^aeioulsz])\1$/.test(w)) w = w.slice(0, -1);
      }
      break;
    }
  }
  if (w.endsWith("ly") && w.length > 5) w = w.slice(0, -2);
  // A final y after a consonant is what "-ies"/"-ied" leave: "movie", "movies" → "movi"; "study", "studied" → "studi".
  if (/[^aeiou]y$/.test(w) && w.length > 3) w = w.slice(0, -1) + "i";
  // A final silent e differs between "like" and "liked"; dropping it everywhere keeps them equal.
  if (w.endsWith("e") && w.length > 3) w = w.slice(0, -1);
  return w;
}

/** Lower-cased, accent-folded words of a text, stop words included. */
export function words(text: string): string[] {
  const folded = text.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
  return folded.match(WORD) ?? [];
}

/** Index terms of a text: stemmed words without stop words. */
export function terms(text: string): string[] {
  const out: string[] = [];
  for (const w of words(text)) if (!STOP_WORDS.has(w)) out.push(stem(w));
  return out;
}

/**
 * The set used to detect near-identical memories. Stop words stay in ("likes tea" and
 * "does not like tea" must not merge); stems fold "likes"/"liked".
 */
export function dedupeKey(text: string): Set<string> {
  return new Set(words(text).map(stem));
}

/** Jaccard similarity of two sets (1 = identical). */
export function jaccard(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  if (a.size === 0 && b.size === 0) return 1;
  let inter = 0;
  for (const x of a) if (b.has(x)) inter++;
  return inter / (a.size + b.size - inter);
}

/** Canonical text for the content-addressed id: folded words joined by single spaces. */
export function canonical(text: string): string {
  return words(text).join(" ");
}
