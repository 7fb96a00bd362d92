// dev: persistent loaded store, a service process, chats at 16 in flight; CPU of service and server.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "nats";
import { defaultConfig } from "./lib/config";
import { provisionBuckets, provisionStream } from "./runtime/provision";
import { startNatsServer } from "./runtime/nats-server";
import { encodeName } from "./lib/keys";

const dir = "/tmp/dev-scale-store";
const fresh = !existsSync(dir);
const server = await startNatsServer({ storeDir: dir });
const nc = await connect({ servers: server.url });
const config = defaultConfig();
const jsm = await nc.jetstreamManager();
await provisionStream(jsm, config);
await provisionBuckets(nc.jetstream(), config);
const enc = new TextEncoder();
if (fresh) {
  const js = nc.jetstream();
  const at = new Date().toISOString();
  const writes: Array<[string, Uint8Array]> = [];
  for (let c = 0; c < 10000; c++) {
    const ch = encodeName(`#scale-${c}`);
    for (let i = 0; i < 10; i++) {
      const id = `b${c}x${i}`.padEnd(22, "0");
      writes.push([`m.${ch}.${id}`, enc.encode(JSON.stringify({ id, channel: `#scale-${c}`, user_id: null, category: "fact", content: `memory ${i} of channel ${c} about kalo mire tavo`, importance: 2, created_at: at, last_accessed: at }))]);
      writes.push([`t.${ch}.${(Date.now() - 86_400_000 + i).toString(36).padStart(9, "0")}-${String(i).padStart(5, "0")}-load`, enc.encode(JSON.stringify({ user: "u", message: `question ${i} kalo`, reply: `answer ${i} mire`, at: Date.now() }))]);
    }
  }
  for (let i = writes.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [writes[i], writes[j]] = [writes[j], writes[i]]; }
  let next = 0;
  await Promise.all(Array.from({ length: 1024 }, async () => { while (next < writes.length) { const w = writes[next++]; await js.publish(`$KV.ROSEY_LLM_MEMORY.${w[0]}`, w[1]); } }));
  console.log("loaded");
}
const big = "1000000000000";
const env = { ...process.env, NATS_URL: server.url, LOG_LEVEL: "warn", LLM_PROVIDERS: "offline", ROSEY_LIMIT_USER_PER_MINUTE: big, ROSEY_LIMIT_USER_PER_HOUR: big, ROSEY_LIMIT_USER_PER_DAY: big, ROSEY_LIMIT_USER_TOKENS_PER_DAY: big, ROSEY_LIMIT_CHANNEL_PER_HOUR: big, ROSEY_LIMIT_GLOBAL_TOKENS_PER_DAY: big };
const child = spawn(process.execPath, [...(process.env.PROF ? ["--cpu-prof", "--cpu-prof-dir", "/tmp/devprof"] : []), join("dist", "runtime", "cli.js"), "start"], { env, stdio: ["ignore", "ignore", "inherit"] });
for (;;) { if (await nc.request("$SRV.PING.rosey-llm", undefined, { timeout: 50 }).then(() => true, () => false)) break; }
const cpu = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" "); return (Number(f[11]) + Number(f[12])) / 100; };
const rss = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
const N = Number(process.env.N ?? 3000);
const chans = Array.from({ length: 1000 }, () => Math.floor(Math.random() * 10000));
const c0 = [cpu(child.pid!), cpu(server.process.pid!)];
const t0 = performance.now();
let next = 0;
await Promise.all(Array.from({ length: 16 }, async () => { while (next < N) { const i = next++; await nc.request("rosey.llm.chat", enc.encode(JSON.stringify({ channel: `#scale-${chans[i % 1000]}`, user: `u${i % 500}`, message: "tell me kalo" })), { timeout: 30000 }); } }));
const secs = (performance.now() - t0) / 1000;
console.log(`${N} chats ${(N / secs).toFixed(0)}/s; service cpu ${((cpu(child.pid!) - c0[0]) / N * 1000).toFixed(2)} ms/chat; server cpu ${((cpu(server.process.pid!) - c0[1]) / N * 1000).toFixed(2)} ms/chat; rss ${rss(child.pid!).toFixed(0)} MiB`);
child.kill("SIGTERM");
await new Promise((r) => child.once("exit", r));
await nc.close();
await server.stop();
