// Related words for offline recall: the synonyms and narrower words of an index term, read from
// lib/memory/synonyms.txt (generated from WordNet by scripts/synonyms.ts, keyed by stem()).
//
// The table is read once, on the first lookup: about 2 MB of text kept as one string per stem,
// split only when a query asks for that stem.
import { readFileSync } from "node:fs";

/** The index terms a query term may also match, most closely related first. */
export type RelatedTerms = (term: string) => readonly string[];

// Beside the module: lib/memory/ in the sources, dist/runtime/ in the bundles (build.mjs copies it there).
const FILE = new URL("synonyms.txt", import.meta.url);

let table: Map<string, string> | undefined;

function load(): Map<string, string> {
  const text = readFileSync(FILE, "latin1");
  const map = new Map<string, string>();
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    if (text[start] !== "#") {
      const tab = text.indexOf("\t", start);
      map.set(text.slice(start, tab), text.slice(tab + 1, end));
    }
    start = end + 1;
  }
  return map;
}

/** WordNet relations: synonyms first, then narrower words ("dog" → beagle, poodle, …). */
export const wordnetTerms: RelatedTerms = (term) => {
  table ??= load();
  const line = table.get(term);
  return line ? line.split(/[\t ]+/).filter((t) => t.length > 0) : [];
};

/** No related terms: recall by exact stems only. */
export const exactTerms: RelatedTerms = () => [];
