// Streaming benchmark: a streamed `complete` through the service against reading the same
// fake OpenAI-compatible server directly, in the same run. The fake server (in this process,
// so its clock is this process's) streams PIECES pieces INTERVAL_MS apart and notes when it
// wrote each one; the reader notes when each arrived. Reported: time to first chunk (request
// sent → first piece read) and the latency of every piece (written by the fake server → read
// here), directly over HTTP and through the service (HTTP → the service's SSE reader → NATS),
// at 1 stream and at LOAD streams in flight, and the service's CPU per streamed request
// against the same request unstreamed.
//
//   npm run bench -- stream   (alone: node build.mjs --quiet && node --import tsx bench/stream.bench.ts)
//
// Knobs: STREAM_ROUNDS (interleaved rounds, default 4), STREAM_PIECES (default 40),
// STREAM_INTERVAL_MS (default 20).
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { connect, createInbox, type NatsConnection } from "nats";
import { sseData } from "../lib/providers/sse";
import { STREAM_HEADER } from "../lib/schemas";
import { startNatsServer, type NatsServer } from "../runtime/nats-server";
import { startOpenAIServer, type FakeOpenAI } from "../test/helpers/openai-server";
import { children, cpuMs, guardRun, openaiServiceEnv, spawnReady, stopChild } from "./harness";
import { fixed, median, percentile, writeSection } from "./lib";

const COMMAND = "npm run bench -- stream  (alone: node build.mjs --quiet && node --import tsx bench/stream.bench.ts)";
const ROUNDS = Number(process.env.STREAM_ROUNDS ?? 4);
const PIECES = Number(process.env.STREAM_PIECES ?? 40);
const INTERVAL_MS = Number(process.env.STREAM_INTERVAL_MS ?? 20);
/** Streams per path and round at 1 in flight. */
const SEQUENTIAL = 3;
const LOAD = 16;
const MODEL = "test-model";
const API_KEY = "sk-bench-stream-0123456789";

let serverRef: NatsServer | undefined;
const guard = guardRun("stream", 140_000, () => serverRef?.process);

/** What one stream measured: time to its first piece and each piece's latency, in ms. */
interface Sample {
  ttfc: number;
  pieces: number[];
}

/** A unique question, so the fake server's record of the request can be found again. */
const question = (id: string) => `stream bench ${id}: tell me a long story about boats`;

/** Users the requests are spread over (a new user costs the limiter more than a known one). */
const USERS = 64;
/** The user and channel of request `id` (`<tag>-<n>`). */
const who = (id: string) => ({ user: `user-${Number(id.slice(id.lastIndexOf("-") + 1)) % USERS}`, channel: "#bench" });

/** The fake server's write times of the request that asked `id`, once it wrote them all. */
function writtenAt(fake: FakeOpenAI, id: string): number[] {
  const r = fake.requests.find((x) => JSON.stringify(x.body?.messages ?? "").includes(question(id)));
  if (!r || r.pieces_at.length !== PIECES) throw new Error(`no complete record of stream ${id}`);
  return r.pieces_at;
}

/** Latency of each piece: when it arrived here minus when the fake server wrote it. */
const latencies = (arrived: number[], written: number[]) => arrived.map((t, i) => t - written[i]);

/** One stream read straight from the fake server over a keep-alive connection. */
async function direct(agent: http.Agent, fake: FakeOpenAI, id: string): Promise<Sample> {
  const body = JSON.stringify({ model: MODEL, messages: [{ role: "user", content: question(id) }], stream: true, stream_options: { include_usage: true } });
  const url = new URL(`${fake.url}/chat/completions`);
  const sent = performance.now();
  const arrived: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path: url.pathname, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), authorization: `Bearer ${API_KEY}` } },
      (res) => {
        (async () => {
          for await (const data of sseData(res)) {
            if (data === "[DONE]") continue;
            const chunk = JSON.parse(data) as { choices?: Array<{ delta?: { content?: string } }> };
            if (chunk.choices?.[0]?.delta?.content) arrived.push(performance.now());
          }
        })().then(resolve, reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
  return { ttfc: arrived[0] - sent, pieces: latencies(arrived, writtenAt(fake, id)) };
}

/** One streamed `complete` through the service, read as a plugin reads it. */
async function viaService(nc: NatsConnection, fake: FakeOpenAI, id: string): Promise<Sample> {
  const inbox = createInbox();
  const arrived: number[] = [];
  const sent = performance.now();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stream ${id}: no reply in 20 s`)), 20_000);
    const sub = nc.subscribe(inbox, {
      callback: (_err, m) => {
        if (m.headers?.get(STREAM_HEADER.name) === STREAM_HEADER.chunk) return void arrived.push(performance.now());
        clearTimeout(timer);
        sub.unsubscribe();
        const r = m.json<{ success?: boolean; error?: string; provider?: string }>();
        if (r.success && r.provider === "openai") resolve();
        else reject(new Error(`stream ${id}: ${r.error ?? `answered by ${r.provider}`}`));
      },
    });
    const req = { messages: [{ role: "user", content: question(id) }], ...who(id), max_tokens: 400, stream: true };
    nc.publish("rosey.llm.complete", JSON.stringify(req), { reply: inbox });
  });
  return { ttfc: arrived[0] - sent, pieces: latencies(arrived, writtenAt(fake, id)) };
}

/** The same `complete` unstreamed: the fake server answers it at once, in one piece. */
async function unstreamed(nc: NatsConnection, id: string): Promise<Sample> {
  const req = { messages: [{ role: "user", content: question(id) }], ...who(id), max_tokens: 400 };
  const r = (await nc.request("rosey.llm.complete", JSON.stringify(req), { timeout: 20_000 })).json<{ success?: boolean; error?: string }>();
  if (!r.success) throw new Error(`request ${id}: ${r.error}`);
  return { ttfc: NaN, pieces: [] };
}

interface Figures {
  ttfc: number[];
  pieces: number[];
}

/** Runs `inFlight` streams at once, `count` of them, and keeps their figures. */
async function measure(run: (id: string) => Promise<Sample>, tag: string, count: number, inFlight: number, into: Figures): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) {
        const s = await run(`${tag}-${next++}`);
        into.ttfc.push(s.ttfc);
        into.pieces.push(...s.pieces);
      }
    }),
  );
}

async function main() {
  const started = performance.now();
  const storeDir = mkdtempSync(join(tmpdir(), "rosey-stream-bench-"));
  const server = await startNatsServer({ storeDir });
  serverRef = server;
  const fake = await startOpenAIServer({ default: { kind: "reply", deltas: Array.from({ length: PIECES }, (_, i) => `piece${i} `), interval_ms: INTERVAL_MS } });
  const nc = await connect({ servers: server.url, name: "bench-stream" });
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOAD, timeout: 4_000 });
  const figures = {
    direct1: { ttfc: [], pieces: [] } as Figures,
    service1: { ttfc: [], pieces: [] } as Figures,
    directN: { ttfc: [], pieces: [] } as Figures,
    serviceN: { ttfc: [], pieces: [] } as Figures,
  };
  // Service CPU (ms) and requests, streamed and unstreamed, at LOAD in flight.
  const cpu = { streamed: [0, 0], unstreamed: [0, 0] };
  try {
    const { child: service } = await spawnReady(
      "service",
      [join("dist", "runtime", "cli.js"), "start"],
      openaiServiceEnv({ natsUrl: server.url, providers: "openai", baseUrl: fake.url, apiKey: API_KEY, model: MODEL, dataDir: join(storeDir, "data") }),
      /"msg":"ready"/,
      "stderr",
    );
    const viaNats = (id: string) => viaService(nc, fake, id);
    const viaHttp = (id: string) => direct(agent, fake, id);
    // Warm-up: JIT, connections, the limiter's keys.
    await measure(viaHttp, "warm-d", 4, 4, { ttfc: [], pieces: [] });
    await measure(viaNats, "warm-s", 4, 4, { ttfc: [], pieces: [] });
    for (let r = 0; r < ROUNDS; r++) {
      await measure(viaHttp, `d1-${r}`, SEQUENTIAL, 1, figures.direct1);
      await measure(viaNats, `s1-${r}`, SEQUENTIAL, 1, figures.service1);
      await measure(viaHttp, `dn-${r}`, LOAD, LOAD, figures.directN);
      const cpu0 = cpuMs(service.pid!);
      await measure(viaNats, `sn-${r}`, LOAD, LOAD, figures.serviceN);
      const cpu1 = cpuMs(service.pid!);
      await measure((id) => unstreamed(nc, id), `un-${r}`, 4 * LOAD, LOAD, { ttfc: [], pieces: [] });
      cpu.streamed = [cpu.streamed[0] + cpu1 - cpu0, cpu.streamed[1] + LOAD];
      cpu.unstreamed = [cpu.unstreamed[0] + cpuMs(service.pid!) - cpu1, cpu.unstreamed[1] + 4 * LOAD];
      // The fake server keeps every request; this run's are done with.
      fake.requests.length = 0;
    }
  } finally {
    await nc.close().catch(() => undefined);
    await Promise.all(children.map(stopChild));
    await fake.close();
    await server.stop();
    rmSync(storeDir, { recursive: true, force: true });
  }
  report(figures, cpu.streamed[0] / cpu.streamed[1], cpu.unstreamed[0] / cpu.unstreamed[1], (performance.now() - started) / 1000);
}

function report(f: Record<"direct1" | "service1" | "directN" | "serviceN", Figures>, cpuStreamed: number, cpuUnstreamed: number, seconds: number) {
  const row = (label: string, d: Figures, s: Figures) => {
    const cell = (xs: number[], q: number) => fixed(percentile(xs, q));
    return [
      `| ${label}, time to first chunk | ${cell(d.ttfc, 50)} / ${cell(d.ttfc, 99)} ms | ${cell(s.ttfc, 50)} / ${cell(s.ttfc, 99)} ms | ${fixed(median(s.ttfc) - median(d.ttfc))} ms |`,
      `| ${label}, chunk latency (written → read) | ${cell(d.pieces, 50)} / ${cell(d.pieces, 99)} ms | ${cell(s.pieces, 50)} / ${cell(s.pieces, 99)} ms | ${fixed(median(s.pieces) - median(d.pieces))} ms |`,
    ];
  };
  const lines = [
    "## Streaming (time to first chunk, chunk overhead)",
    "",
    `Command: \`${COMMAND}\``,
    "",
    "One nats-server, the service as one `node dist/runtime/cli.js start` process (provider `openai` pointed at the " +
      "fake server, limits raised so nothing is refused), and in this process the tests' fake OpenAI-compatible server " +
      `(test/helpers/openai-server.ts) streaming ${PIECES} pieces ${INTERVAL_MS} ms apart per request, and the readers, ` +
      `on one ${cpus().length}-core machine (Node ${process.version}). Direct: a keep-alive HTTP request to the fake ` +
      "server with `stream: true`, read with the service's own SSE reader. Service: a streamed `complete` " +
      "(`stream: true`), read the plain nats.js way (an inbox subscription). Time to first chunk: request sent → first " +
      "piece read. Chunk latency: the fake server wrote the piece → it was read here (one clock: the same process), " +
      `every piece of every stream. ${ROUNDS} interleaved rounds of ${SEQUENTIAL} streams per path at 1 in flight and ` +
      `${LOAD} at ${LOAD} in flight; figures over all of them.`,
    "",
    "| | direct p50 / p99 | through the service p50 / p99 | service overhead at p50 |",
    "|---|---|---|---|",
    ...row("1 stream", f.direct1, f.service1),
    ...row(`${LOAD} streams`, f.directN, f.serviceN),
    "",
    `Service CPU (user + system, /proc) per request at ${LOAD} in flight: ${fixed(cpuStreamed)} ms streamed ` +
      `(${PIECES} chunks), ${fixed(cpuUnstreamed)} ms for the same \`complete\` unstreamed, so ` +
      `${fixed(((cpuStreamed - cpuUnstreamed) / PIECES) * 1000, 0)} µs per chunk (reading it from the server, ` +
      "parsing its event, publishing it to NATS).",
    "",
    `Run took ${seconds.toFixed(0)} s.`,
  ];
  const md = lines.join("\n");
  writeSection("stream", md);
  console.log(md);
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => clearTimeout(guard));
