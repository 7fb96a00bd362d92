// Memory benchmark: recall latency at 100, 1,000 and 10,000 memories per channel, the cost
// of building a chat's context with everything in it versus an empty channel, and a bare
// KV get as the baseline — all against one real nats-server started here.
//
//   node --import tsx bench/memory.bench.ts
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "nats";
import { defaultConfig } from "../lib/config";
import type { Events, Providers } from "../lib/context";
import { silentLogger } from "../lib/log";
import { createMemory } from "../lib/memory";
import { BUILTIN_PERSONAS } from "../lib/personas";
import { createOfflineProvider } from "../lib/providers/offline";
import { estimateTokens, estimateMessagesTokens } from "../lib/providers/tokens";
import { encodeName } from "../lib/keys";
import { natsKv } from "../runtime/kv";
import { streamReads } from "../runtime/kv-reads";
import { BUCKETS, provisionBuckets } from "../runtime/provision";
import { startNatsServer } from "../runtime/nats-server";
import { ms, percentile, writeSection } from "./lib";

const COMMAND = "node --import tsx bench/memory.bench.ts";
const SAMPLES = 500;
const SIZES = [100, 1_000, 10_000];

/** Deterministic pseudo-random numbers, so every run indexes the same text. */
function rng(seed: number) {
  return () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 2 ** 32;
  };
}
const rand = rng(42);
const SYL = ["ka", "lo", "mi", "ren", "ta", "vo", "sil", "dar", "ne", "pu", "qua", "zo", "bel", "fin", "gor", "hu"];
const VOCAB = Array.from({ length: 3_000 }, () => Array.from({ length: 2 + Math.floor(rand() * 3) }, () => SYL[Math.floor(rand() * SYL.length)]).join(""));
/** Zipf-like pick: a few words are common, most are rare, as in chat. */
const word = () => VOCAB[Math.floor(VOCAB.length * rand() ** 2.5)];
const sentence = (n: number) => Array.from({ length: n }, word).join(" ");

async function time<T>(n: number, fn: (i: number) => Promise<T>): Promise<number[]> {
  for (let i = 0; i < Math.min(50, n); i++) await fn(i); // warm-up
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    out.push(performance.now() - t);
  }
  return out;
}

async function inBatches(n: number, size: number, fn: (i: number) => Promise<unknown>) {
  for (let i = 0; i < n; i += size) await Promise.all(Array.from({ length: Math.min(size, n - i) }, (_, j) => fn(i + j)));
}

const row = (name: string, s: number[], note = "") => `| ${name} | ${ms(percentile(s, 50))} | ${ms(percentile(s, 99))} | ${note} |`;

async function main() {
  const started = performance.now();
  const storeDir = mkdtempSync(join(tmpdir(), "rosey-llm-bench-memory-"));
  const server = await startNatsServer({ storeDir });
  const nc = await connect({ servers: server.url });
  try {
    const config = defaultConfig({ memory: { max_memories_per_channel: 20_000, summarize_after: 24, history_messages: 20 } as never });
    // The bucket as the runtime provisions it: history keys carry a TTL.
    const bucket = (await provisionBuckets(nc.jetstream(), config)).memory;
    const kv = { ...natsKv(bucket, BUCKETS.memory), ...streamReads(nc, await nc.jetstreamManager(), BUCKETS.memory, false) };
    const offline = createOfflineProvider();
    const providers: Providers = {
      complete: (m, o = {}) => offline.complete(m, o),
      status: () => [],
      current: () => ({ name: offline.name, model: offline.model }),
      estimateTokens,
    };
    const events: Events = { emit: () => "bench", flush: async () => {} };
    const mem = createMemory({ kv, config, clock: { now: () => Date.now() }, events, providers, log: silentLogger });

    const rows: string[] = [];
    const loadNotes: string[] = [];

    // Baseline: one KV get round trip.
    const m0 = await mem.add({ channel: "#baseline", content: "baseline memory", category: "fact", importance: 1 });
    const k0 = `m.${encodeName("#baseline")}.${m0.id}`;
    rows.push(row("KV get (baseline round trip)", await time(SAMPLES, () => kv.get(k0))));

    for (const n of SIZES) {
      const channel = `#recall-${n}`;
      const t = performance.now();
      await inBatches(n, 64, () => mem.add({ channel, content: sentence(6 + Math.floor(rand() * 10)), category: "fact", importance: 1 + Math.floor(rand() * 5) }));
      loadNotes.push(`${n.toLocaleString("en")} memories added in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      const queries = Array.from({ length: 64 }, () => sentence(3 + Math.floor(rand() * 3)));
      let hits = 0;
      const s = await time(SAMPLES, async (i) => {
        hits += (await mem.recall({ channel, query: queries[i % queries.length], user_id: "someone", limit: 5 })).length;
      });
      rows.push(row(`recall, ${n.toLocaleString("en")} memories, limit 5`, s, `${(hits / (SAMPLES + 50)).toFixed(1)} results per query`));
    }

    // What recall would cost if it read the channel's keys per request instead of the index.
    for (const n of [100, 1_000]) {
      const filter = `m.${encodeName(`#recall-${n}`)}.*`;
      const s = await time(5, async () => {
        const keys = await kv.keys(filter);
        await Promise.all(keys.map((k) => kv.get(k)));
      });
      rows.push(row(`for comparison: list + get every key, ${n.toLocaleString("en")} memories`, s, "what the cached index avoids"));
    }

    // Context: a channel with summaries, memories and a full history versus an empty one.
    const full = "#ctx-full";
    for (let i = 0; i < 40; i++) {
      await mem.record(full, `user${i % 4}`, `message ${i} about ${sentence(12)}`, `reply ${i}: ${sentence(20)}`);
      await mem.settled();
    }
    await inBatches(100, 32, (i) => mem.add({ channel: full, content: `fact ${i} ${sentence(8)}`, category: "fact", importance: 1 + (i % 5) }));
    const persona = BUILTIN_PERSONAS[0];
    const message = `what about ${sentence(4)}`;
    const sample = await mem.context(full, "user1", message, persona);
    const fullTimes = await time(SAMPLES, () => mem.context(full, "user1", message, persona));
    const emptyTimes = await time(SAMPLES, () => mem.context("#ctx-empty", "user1", message, persona));
    const recordTimes = await time(200, (i) => mem.record("#ctx-record", "user1", `hello ${i}`, `hi ${i}`));
    const summaries = sample.filter((m) => m.content.startsWith("Previous conversation summary")).length;
    const facts = sample.some((m) => m.content.startsWith("Remembered facts")) ? 1 : 0;
    rows.push(
      row("context(), full channel", fullTimes, `${sample.length} messages (${summaries} summaries, ${facts} facts block, history), ~${estimateMessagesTokens(sample)} tokens`),
      row("context(), empty channel", emptyTimes, "persona prompt + new message"),
      row("record() (one write per exchange)", recordTimes, "summarization runs in the background"),
    );
    await mem.settled();
    mem.close();

    const seconds = ((performance.now() - started) / 1000).toFixed(0);
    const md = [
      "## Memory",
      "",
      `Command: \`${COMMAND}\` (starts its own nats-server, single node, file store; ${SAMPLES} samples per row after 50 warm-up calls unless noted; run took ${seconds} s).`,
      "",
      "| operation | p50 | p99 | note |",
      "|---|---|---|---|",
      ...rows,
      "",
      `Loading: ${loadNotes.join("; ")} (64 adds in flight, each a CAS create).`,
      "",
      "Recall and context() are served from this instance's cached index of the channel after one round trip",
      "that asks the bucket what changed in the channel since this instance last read it (nothing, here; see the",
      "Scale section for channels read cold). A recall that finds memories not used for a minute also",
      "rewrites their last_accessed in the background (not in these figures, which use fresh memories). record()",
      "costs one round trip (one write per exchange). Synthetic text: 3,000 pseudo-words with a Zipf-like",
      "frequency, 6–15 words per memory, 3–5 words per query.",
    ].join("\n");
    writeSection("memory", md);
    console.log(md);
  } finally {
    await nc.drain().catch(() => {});
    await server.stop();
    rmSync(storeDir, { recursive: true, force: true });
  }
}

await main();
