import { connect, createInbox, headers, type NatsConnection } from "nats";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startNatsServer } from "./runtime/nats-server";
import { encodeName } from "./lib/keys";
import { percentile } from "./bench/lib";

const srv = await startNatsServer({ storeDir: process.env.STORE ?? mkdtempSync(join(tmpdir(), "exp-")) });
const nc = await connect({ servers: srv.url });
const js = nc.jetstream();
const kv = await js.views.kv("M", { history: 1 });
const enc = new TextEncoder(), dec = new TextDecoder();
const CH = 10000;
let t = performance.now();
const jobs: Array<() => Promise<unknown>> = [];
for (let c = 0; c < CH; c++) {
  const ch = encodeName(`#chan-${c}`);
  for (let i = 0; i < 10; i++) {
    const id = `mem${c}x${i}`;
    jobs.push(() => js.publish(`$KV.M.m.${ch}.${id}`, enc.encode(JSON.stringify({ id, channel: `#chan-${c}`, user_id: null, category: "fact", content: `some memory content number ${i} about things in channel ${c} with words`, importance: 2, created_at: new Date().toISOString(), last_accessed: new Date().toISOString() }))));
    jobs.push(() => js.publish(`$KV.M.t.${ch}.${(1e9 + i).toString(36)}-00000-abc`, enc.encode(JSON.stringify({ user: "alice", message: `question ${i} in channel ${c}`, reply: `answer ${i} with a few more words`, at: Date.now() }))));
  }
}
// shuffle so channels are interleaved over the stream
for (let i = jobs.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [jobs[i], jobs[j]] = [jobs[j], jobs[i]]; }
let next = 0;
if (!process.env.STORE) await Promise.all(Array.from({ length: 256 }, async () => { while (next < jobs.length) await jobs[next++](); }));
console.log("loaded", jobs.length, "in", ((performance.now() - t) / 1000).toFixed(1), "s");
const jsm = await nc.jetstreamManager();
console.log((await jsm.streams.info("KV_M")).state);

async function direct(body: unknown): Promise<{ n: number; code?: number }> {
  const inbox = createInbox();
  const sub = nc.subscribe(inbox);
  nc.publish("$JS.API.DIRECT.GET.KV_M", enc.encode(JSON.stringify(body)), { reply: inbox });
  let n = 0;
  for await (const m of sub) {
    const code = m.headers?.code ?? 0;
    if (code >= 200 && code !== 0) { sub.unsubscribe(); return { n, code }; }
    n++;
  }
  return { n };
}
async function leader(body: unknown) {
  const m = await nc.request("$JS.API.STREAM.MSG.GET.KV_M", enc.encode(JSON.stringify(body)));
  return JSON.parse(dec.decode(m.data));
}
async function timeIt(name: string, n: number, fn: (i: number) => Promise<unknown>) {
  const s: number[] = [];
  for (let i = 0; i < n; i++) { const t0 = performance.now(); await fn(i); s.push(performance.now() - t0); }
  console.log(name.padEnd(40), "p50", percentile(s, 50).toFixed(3), "p99", percentile(s, 99).toFixed(3));
}
const ch = (i: number) => encodeName(`#chan-${(i * 7919) % CH}`);
const last = (await jsm.streams.info("KV_M")).state.last_seq;
await timeIt("multi_last channel", 300, (i) => direct({ multi_last: [`$KV.M.*.${ch(i)}.*`] }));
await timeIt("leader last_by_subj wc", 300, (i) => leader({ last_by_subj: `$KV.M.*.${ch(i + 1000)}.*` }));
await timeIt("leader next_by_subj from 1", 100, (i) => leader({ next_by_subj: `$KV.M.*.${ch(i + 2000)}.*`, seq: 1 }));
await timeIt("leader next_by_subj from last-1000 (404)", 300, (i) => leader({ next_by_subj: `$KV.M.*.${ch(i + 3000)}.*`, seq: last - 1000 }));
await timeIt("leader next_by_subj from mid (404?)", 100, (i) => leader({ next_by_subj: `$KV.M.*.${ch(i + 3000)}.*`, seq: Math.floor(last / 2) }));
await timeIt("direct batch next from last-1000", 300, (i) => direct({ next_by_subj: `$KV.M.*.${ch(i + 4000)}.*`, seq: last - 1000, batch: 64 }));
await timeIt("kv.watch ordered consumer load", 100, async (i) => {
  const w = await kv.watch({ key: `*.${ch(i + 5000)}.*` });
  let n = 0;
  for await (const e of w) { n++; if (e.delta === 0) break; }
  w.stop();
});
await timeIt("leader literal last", 300, (i) => leader({ last_by_subj: `$KV.M.m.${ch(i)}.mem${(i * 7919) % CH}x1` }));
await nc.close(); await srv.stop();
