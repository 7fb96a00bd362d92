// Scale benchmark: does an instance stay small and quick to start whatever is stored? One
// nats-server; the same figures first over empty buckets, then after loading (straight into
// the memory bucket, in the stored format, many writes in flight) SCALE_CHANNELS channels of
// 10 memories, 10 exchanges and a summary of 10 more (deleted, as summarized exchanges are)
// each (100,000 + 100,000 + 100,000 summarized by default). For each, a fresh
// instance as a separate process (`node dist/runtime/cli.js start` with the flags `npm start`
// passes, offline provider):
// time until it answers $SRV.PING and its first request, RSS after start and after
// SCALE_CHATS chats over 1,000 random channels, first chat and first recall on channels it
// never read (p50/p99), hot chat p50. And how one channel's keys are best read cold:
// a batched direct get against an ordered consumer filtered to the channel.
//
//   node build.mjs --quiet && node --import tsx bench/scale.bench.ts
//
// Knobs: SCALE_CHANNELS (default 10000), SCALE_CHATS (default 10000).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { connect, createInbox, Empty, headers, type NatsConnection } from "nats";
import { defaultConfig } from "../lib/config";
import { encodeName } from "../lib/keys";
import type { Memory } from "../lib/schemas";
import { NODE_FLAGS } from "../runtime/heap";
import { provisionBuckets, provisionStream } from "../runtime/provision";
import { startNatsServer, type NatsServer } from "../runtime/nats-server";
import { abortRun, children, cpuMs, guardRun, rssMiB } from "./harness";
import { ms, percentile, writeSection } from "./lib";

const COMMAND = "npm run bench  (this section alone: node build.mjs --quiet && node --import tsx bench/scale.bench.ts)";
const CHANNELS = Number(process.env.SCALE_CHANNELS ?? 10_000);
const CHATS = Number(process.env.SCALE_CHATS ?? 10_000);
const PER_CHANNEL = 10;
const CHAT_CHANNELS = 1_000;
const COLD_SAMPLES = 200;
const HOT_SAMPLES = 300;
const IN_FLIGHT = 16;
/** Starts per column; start figures are their median. */
const STARTS = 3;
/** The third column's channel cache (ROSEY_MEMORY_CACHE_MB): room for every channel the load uses. */
const BIG_CACHE_MB = 64;
const BUCKET = "ROSEY_LLM_MEMORY";
const root = process.cwd();
const enc = new TextEncoder();

let server: NatsServer | undefined;
const abort = (why: string) => abortRun("scale", why, () => server?.process);
guardRun("scale", 560_000, () => server?.process);

/** Deterministic pseudo-random numbers and Zipf-like pseudo-words, as in memory.bench.ts. */
let seed = 7;
const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0), seed / 2 ** 32);
const SYL = ["ka", "lo", "mi", "ren", "ta", "vo", "sil", "dar", "ne", "pu", "qua", "zo", "bel", "fin", "gor", "hu"];
const VOCAB = Array.from({ length: 3_000 }, () => Array.from({ length: 2 + Math.floor(rand() * 3) }, () => SYL[Math.floor(rand() * SYL.length)]).join(""));
const sentence = (n: number) => Array.from({ length: n }, () => VOCAB[Math.floor(VOCAB.length * rand() ** 2.5)]).join(" ");
const channelName = (c: number) => `#scale-${c}`;

/** Runs `fn` on 0..n-1 with `width` calls in flight. */
async function pool(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < n) await fn(next++);
  }));
}

/** Where an instance's memory goes, measured apart from this run (see the text); kept beside the code. */
const MEMORY_NOTES = `Where the memory goes, measured on an instance after the same chats with all 1,000 channels held (separate runs: a heap snapshot, \`process.memoryUsage()\`, \`v8.getHeapSpaceStatistics()\` and /proc/<pid>/status; load average 2–5). RSS 175–190 MiB =
- **44 MiB mapped from the node binary** (RssFile; a bare \`node\` maps 34). The default UTC calendar no longer asks Intl for time zone data, which mapped 6 MiB more of ICU.
- **the V8 heap, about 110 MiB**: 64 MiB alive after a full collection, of which the 1,000 cached channels took about 37 MiB (32 KiB each since the recall index keeps term counts in its postings: in-process measurement of 1,000 such channels, 19 KiB for the 10 memories, 10 for the 20 exchanges, the rest the channel's maps) and code, schemas and modules the rest; the old generation may grow to live × 1.45 before a full collection (runtime/heap.ts); the young generation is 2 × 8 MiB (\`npm start\` passes --max-semi-space-size=8; V8's default is 2 × 16).
- **20–25 MiB of other anonymous memory**: malloc arenas, thread stacks, buffers (MALLOC_ARENA_MAX=2 saved 5 MiB: not pursued).

The growing factor trades RSS for CPU (service CPU for the 10,000 chats / RSS after, one run each, all channels held): V8's default 10.8 s / 187 MiB empty, 13.8 s / 325 MiB full; × 1.45 (the default now) 11.0 s / 123 MiB and 15.0 s / 188 MiB; × 1.3 12.5 s / 116 MiB and 17.6–21.2 s / 180 MiB; × 1.1 full 175 MiB at 25 % more CPU again. A semi-space of 8 MiB costs no CPU measurably and saves 8–10 MiB. The 14 handler bundles each carry their own copy of lib/ (packages, zod among them, are shared): 2 MiB of heap in all, not worth a shared chunk. So over full buckets RSS is set by the channel cache, not by what is stored, and its default size (ROSEY_MEMORY_CACHE_MB=12) is chosen to keep an instance under 150 MiB: in runs of this benchmark with the slimmer index, 12 MB gave 148 MiB, 16 MB 155 MiB, 64 MB 180 MiB. Before these settings: 195 MiB empty, 339 MiB full.`;

/** Writes CHANNELS channels of memories and exchanges into the bucket, interleaved; returns seconds. */
async function load(nc: NatsConnection): Promise<number> {
  const js = nc.jetstream();
  const t = performance.now();
  const at = new Date().toISOString();
  const writes: Array<[string, Uint8Array]> = [];
  // Summarized exchanges: stored, then deleted as the service deletes them once summarized
  // (a delete marker that expires), their summary kept.
  const markers: string[] = [];
  const exchangeId = (daysAgo: number, i: number) => `${(Date.now() - daysAgo * 86_400_000 + i).toString(36).padStart(9, "0")}-${String(i).padStart(5, "0")}-load`;
  const exchange = (i: number) => enc.encode(JSON.stringify({ user: `user${i}`, message: sentence(8 + Math.floor(rand() * 8)), reply: sentence(15 + Math.floor(rand() * 15)), at: Date.now() }));
  for (let c = 0; c < CHANNELS; c++) {
    const ch = encodeName(channelName(c));
    for (let i = 0; i < PER_CHANNEL; i++) {
      const id = `b${c}x${i}`.padEnd(22, "0");
      const memory: Memory = { id, channel: channelName(c), user_id: i % 3 ? null : `user${i}`, category: "fact", content: sentence(6 + Math.floor(rand() * 10)), importance: 1 + (i % 5), created_at: at, last_accessed: at };
      writes.push([`m.${ch}.${id}`, enc.encode(JSON.stringify(memory))]);
      writes.push([`t.${ch}.${exchangeId(1, i)}`, exchange(i)]);
      writes.push([`t.${ch}.${exchangeId(2, i)}`, exchange(i)]);
      markers.push(`t.${ch}.${exchangeId(2, i)}`);
    }
    const summary = { summary: sentence(40), message_count: 2 * PER_CHANNEL, first: exchangeId(2, 0), last: exchangeId(2, PER_CHANNEL - 1), at: Date.now() };
    writes.push([`s.${ch}.${summary.first}`, enc.encode(JSON.stringify(summary))]);
  }
  // Channels written over time: one channel's keys are spread over the whole stream.
  const shuffle = <T>(xs: T[]) => {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
  };
  shuffle(writes);
  shuffle(markers);
  await pool(writes.length, 1_024, (i) => js.publish(`$KV.${BUCKET}.${writes[i][0]}`, writes[i][1]));
  const marker = headers();
  marker.set("KV-Operation", "DEL");
  marker.set("Nats-TTL", `${defaultConfig().storage.marker_ttl_seconds}s`);
  await pool(markers.length, 1_024, (i) => js.publish(`$KV.${BUCKET}.${markers[i]}`, Empty, { headers: marker }));
  return (performance.now() - t) / 1000;
}


async function call(nc: NatsConnection, subject: string, body: unknown): Promise<number> {
  const t = performance.now();
  const m = await nc.request(subject, enc.encode(JSON.stringify(body)), { timeout: 30_000 });
  if (m.headers?.get("Nats-Service-Error-Code")) throw new Error(`${subject}: ${m.headers.get("Nats-Service-Error")}`);
  return performance.now() - t;
}
const chat = (nc: NatsConnection, c: number, i: number) =>
  call(nc, "rosey.llm.chat", { channel: channelName(c), user: `user${i % 500}`, message: `tell me about ${sentence(4)}` });
const recall = (nc: NatsConnection, c: number) => call(nc, "rosey.llm.memory.recall", { channel: channelName(c), query: sentence(3), limit: 5 });

interface Figures {
  pingMs: number;
  firstMs: number;
  rssStart: number;
  rssAfter: number;
  coldChat: number[];
  coldRecall: number[];
  hotChat: number[];
  chatsPerSecond: number;
  /** CPU time of the instance (user + system) per chat of the load. */
  cpuPerChat: number;
}

/** A fresh instance: its process, and when it answered PING and its first request (ms from spawn). */
async function start(nc: NatsConnection, env: NodeJS.ProcessEnv, cold: () => number): Promise<{ child: ChildProcess; pingMs: number; firstMs: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [...NODE_FLAGS, join(root, "dist", "runtime", "cli.js"), "start"], { cwd: root, env, stdio: ["ignore", "ignore", "pipe"] });
  children.push(child);
  let log = "";
  child.stderr!.on("data", (d: Buffer) => void (log = (log + d.toString()).slice(-4_000)));
  child.once("exit", (code) => code !== null && code !== 0 && abort(`service exited (${code}):\n${log}`));
  // PING as a client would, until someone answers; then the first request at once.
  for (;;) {
    const pong = await nc.request("$SRV.PING.rosey-llm", undefined, { timeout: 20 }).then(() => true, () => false);
    if (pong) break;
    if (performance.now() - t0 > 60_000) abort(`no PING answer in 60 s:\n${log}`);
  }
  const pingMs = performance.now() - t0;
  await recall(nc, cold());
  return { child, pingMs, firstMs: performance.now() - t0 };
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  await exited;
}

/** Starts fresh instances and measures them (see the header). `cold` hands out channels none of them read. */
async function measure(nc: NatsConnection, env: NodeJS.ProcessEnv, cold: () => number): Promise<Figures> {
  // Start time is noisy on a shared machine: the median of a few starts.
  const starts = [];
  for (let i = 0; i < STARTS - 1; i++) {
    const s = await start(nc, env, cold);
    starts.push(s);
    await stop(s.child);
  }
  const { child, ...last } = await start(nc, env, cold);
  starts.push(last);
  const pingMs = percentile(starts.map((s) => s.pingMs), 50);
  const firstMs = percentile(starts.map((s) => s.firstMs), 50);
  const rssStart = rssMiB(child.pid!);
  console.log(`  PING answered after ${ms(pingMs)}, first request after ${ms(firstMs)} (median of ${STARTS} starts), RSS ${rssStart.toFixed(0)} MiB`);

  const coldChat: number[] = [];
  const coldRecall: number[] = [];
  for (let i = 0; i < COLD_SAMPLES; i++) coldChat.push(await chat(nc, cold(), i));
  for (let i = 0; i < COLD_SAMPLES; i++) coldRecall.push(await recall(nc, cold()));
  console.log(`  cold chat p50 ${ms(percentile(coldChat, 50))}, cold recall p50 ${ms(percentile(coldRecall, 50))}`);

  const chatChannels = Array.from({ length: CHAT_CHANNELS }, () => Math.floor(rand() * CHANNELS));
  const tc = performance.now();
  const cpu0 = cpuMs(child.pid!);
  await pool(CHATS, IN_FLIGHT, (i) => chat(nc, chatChannels[Math.floor(rand() * chatChannels.length)], i));
  const chatsPerSecond = CHATS / ((performance.now() - tc) / 1000);
  const cpuPerChat = (cpuMs(child.pid!) - cpu0) / CHATS;
  console.log(`  ${CHATS} chats at ${chatsPerSecond.toFixed(0)}/s, ${cpuPerChat.toFixed(2)} ms of CPU each`);
  const hotChat: number[] = [];
  for (let i = 0; i < HOT_SAMPLES; i++) hotChat.push(await chat(nc, chatChannels[i % 20], i));
  const rssAfter = rssMiB(child.pid!);
  await stop(child);
  return { pingMs, firstMs, rssStart, rssAfter, coldChat, coldRecall, hotChat, chatsPerSecond, cpuPerChat };
}

/** Latency of reading one channel's keys cold, two ways, over `channels` distinct channels. */
async function loaders(nc: NatsConnection, channels: number[]): Promise<{ direct: number[]; consumer: number[] }> {
  const kv = await nc.jetstream().views.kv(BUCKET);
  const direct: number[] = [];
  const consumer: number[] = [];
  for (const [i, c] of channels.entries()) {
    const filter = `*.${encodeName(channelName(c))}.*`;
    if (i % 2 === 0) {
      const t = performance.now();
      const inbox = createInbox();
      const sub = nc.subscribe(inbox);
      nc.publish(`$JS.API.DIRECT.GET.KV_${BUCKET}`, enc.encode(JSON.stringify({ multi_last: [`$KV.${BUCKET}.${filter}`] })), { reply: inbox });
      for await (const m of sub) if (m.headers?.code) break;
      direct.push(performance.now() - t);
    } else {
      const t = performance.now();
      const w = await kv.watch({ key: filter });
      for await (const e of w) if (e.delta === 0) break;
      w.stop();
      consumer.push(performance.now() - t);
    }
  }
  return { direct, consumer };
}

async function main() {
  const started = performance.now();
  const loadStart = loadavg()[0].toFixed(1);
  const storeDir = mkdtempSync(join(tmpdir(), "rosey-scale-bench-"));
  server = await startNatsServer({ storeDir });
  const nc = await connect({ servers: server.url, name: "bench-scale" });
  try {
    const config = defaultConfig();
    const jsm = await nc.jetstreamManager();
    await provisionStream(jsm, config);
    await provisionBuckets(nc.jetstream(), config);
    const big = "1000000000000";
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NATS_URL: server.url,
      LOG_LEVEL: "warn",
      LLM_PROVIDERS: "offline",
      ROSEY_LIMIT_USER_PER_MINUTE: big,
      ROSEY_LIMIT_USER_PER_HOUR: big,
      ROSEY_LIMIT_USER_PER_DAY: big,
      ROSEY_LIMIT_USER_TOKENS_PER_DAY: big,
      ROSEY_LIMIT_CHANNEL_PER_HOUR: big,
      ROSEY_LIMIT_GLOBAL_TOKENS_PER_DAY: big,
    };

    // Cold channels: never read by the instance measuring them (each run takes fresh ones).
    let nextCold = 0;
    const cold = () => CHANNELS - 1 - (nextCold++ % CHANNELS);
    console.log("empty buckets:");
    const empty = await measure(nc, env, cold);
    // The empty run wrote its chats: start the full run from a bucket holding only the load.
    await jsm.streams.purge(`KV_${BUCKET}`);
    const loadSeconds = await load(nc);
    // Let the server write out what it just took in before anything is timed.
    await new Promise((r) => setTimeout(r, 5_000));
    const info = await jsm.streams.info(`KV_${BUCKET}`);
    console.log(`loaded ${info.state.messages} messages in ${loadSeconds.toFixed(0)} s\nfull buckets:`);
    const full = await measure(nc, env, cold);
    // The same over full buckets with a cache that holds every channel of the load.
    console.log(`full buckets, ${BIG_CACHE_MB} MB cache:`);
    const fullBig = await measure(nc, { ...env, ROSEY_MEMORY_CACHE_MB: String(BIG_CACHE_MB) }, cold);
    const coldChannels = Array.from({ length: 200 }, () => cold());
    const { direct, consumer } = await loaders(nc, coldChannels);

    const cols = [empty, full, fullBig];
    const row = (name: string, f: (x: Figures) => string, target = "") => `| ${name} | ${cols.map(f).join(" | ")} | ${target} |`;
    const p = (xs: number[], q: number) => ms(percentile(xs, q));
    const p50p99 = (xs: number[]) => `${p(xs, 50)} / ${p(xs, 99)}`;
    const mib = (x: number) => `${x.toFixed(0)} MiB`;
    const seconds = ((performance.now() - started) / 1000).toFixed(0);
    const md = [
      "## Scale (an instance over full buckets)",
      "",
      `Command: \`${COMMAND}\` (run took ${seconds} s).`,
      "",
      `One nats-server v${nc.info?.version} (file store, loopback) on a ${cpus().length}-core machine (${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}) shared with other work while it ran (load average ${loadStart} at the start, ${loadavg()[0].toFixed(1)} at the end). ` +
        `Full: ${(CHANNELS * PER_CHANNEL).toLocaleString("en")} memories, ${(CHANNELS * PER_CHANNEL).toLocaleString("en")} exchanges and ${(CHANNELS * PER_CHANNEL).toLocaleString("en")} summarized exchanges (stored, then deleted with an expiring marker as the service does, a summary of them kept) in ${CHANNELS.toLocaleString("en")} channels, written straight into ${BUCKET} in the stored format, interleaved (${info.state.messages.toLocaleString("en")} messages, ${(info.state.bytes / 2 ** 20).toFixed(0)} MiB in the stream, loaded in ${loadSeconds.toFixed(0)} s with 1,024 writes in flight). ` +
        `Each column: fresh instances (\`node ${NODE_FLAGS.join(" ")} dist/runtime/cli.js start\` as \`npm start\` runs it, offline provider, default channel cache: 1,000 channels / ${defaultConfig().memory.cache_mb} MB, except in the third column) each started as a separate process while a client sends $SRV.PING every 20 ms; the first request is a memory_recall sent the moment PING is answered; the last of ${STARTS} instances then serves the rest. ` +
        `Cold: the first request of that instance for that channel, one at a time, ${COLD_SAMPLES} channels each. Then ${CHATS.toLocaleString("en")} chats over ${CHAT_CHANNELS.toLocaleString("en")} random channels (${IN_FLIGHT} in flight), then ${HOT_SAMPLES} chats one at a time on 20 of those channels (hot).`,
      "",
      `| | empty buckets | full buckets | full buckets, ${BIG_CACHE_MB} MB cache | target |`,
      "|---|---|---|---|---|",
      row(`PING answered, from process spawn (median of ${STARTS} starts)`, (x) => ms(x.pingMs), "full within 0.5 s of empty"),
      row(`first request answered, from process spawn (median of ${STARTS} starts)`, (x) => ms(x.firstMs)),
      row("RSS after start (first request answered)", (x) => mib(x.rssStart), "≤ 150 MiB"),
      row(`RSS after ${CHATS.toLocaleString("en")} chats over ${CHAT_CHANNELS.toLocaleString("en")} channels`, (x) => mib(x.rssAfter), "≤ 150 MiB"),
      row("first chat on a cold channel, p50 / p99", (x) => p50p99(x.coldChat)),
      row("first recall on a cold channel, p50 / p99", (x) => p50p99(x.coldRecall), "p99 ≤ 20 ms"),
      row("hot chat, p50 / p99", (x) => p50p99(x.hotChat), "unchanged"),
      row(`chats/s, ${IN_FLIGHT} in flight`, (x) => x.chatsPerSecond.toFixed(0)),
      row("service CPU per chat of that load", (x) => ms(x.cpuPerChat)),
      "",
      `Reading one channel's keys cold (10 memories, 10 exchanges, a summary and 10 delete markers among ${info.state.messages.toLocaleString("en")} messages), straight against the stream, 100 channels each way: ` +
        `batched direct get (\`multi_last\`, what the service does) p50 ${p(direct, 50)}, p99 ${p(direct, 99)}; ` +
        `ordered consumer filtered to the channel (a KV watch) p50 ${p(consumer, 50)}, p99 ${p(consumer, 99)}.`,
      "",
      "Nothing is read at start: an instance loads a channel on its first request for it (one batched direct get of that channel's keys; on a replicated bucket the stream leader's last revision for the channel is asked concurrently), and before each later request asks the bucket what changed in the channel since (one round trip, nothing when no other instance wrote). So start time and RSS follow the channels in use, not what is stored; a cold request costs one round trip more than the same request on an empty channel, whose load finds nothing. RSS after the chats: the empty column is what an instance takes under this load with nothing to hold; the full columns add the channels it then holds (10 memories and 20-odd exchanges each, about 32 KiB of heap), bounded by ROSEY_MEMORY_CACHE_CHANNELS and ROSEY_MEMORY_CACHE_MB whatever the bucket holds: with the default, the channels that fit in its megabytes (some 380 of these); in the third column, all 1,000. A channel not held costs its load instead of the check a held one gets: one round trip either way, plus parsing its keys and indexing its memories (CPU row).",
      "",
      MEMORY_NOTES,
    ].join("\n");
    writeSection("scale", md);
    console.log(md);
  } finally {
    await nc.drain().catch(() => {});
    for (const c of children) c.kill("SIGKILL");
    await server.stop();
    rmSync(storeDir, { recursive: true, force: true });
  }
}

await main();
