import { defaultConfig } from "./lib/config";
import { MemoryKv } from "./lib/kv";
import { silentLogger } from "./lib/log";
import { createMemory } from "./lib/memory";
import { BUILTIN_PERSONAS } from "./lib/personas";
import { encodeName } from "./lib/keys";
import { estimateTokens } from "./lib/providers/tokens";

const kv = new MemoryKv("M");
const enc = new TextEncoder();
const N = 2000;
const words = (n: number, seed: number) => Array.from({ length: n }, (_, i) => `word${(seed * 31 + i * 17) % 3000}`).join(" ");
const at = new Date().toISOString();
const kind = process.argv[2] ?? "mixed";
for (let c = 0; c < N; c++) {
  const ch = encodeName(`#chan-${c}`);
  if (kind !== "history") for (let i = 0; i < 10; i++) {
    const id = `m${c}x${i}`.padEnd(22, "0");
    await kv.put(`m.${ch}.${id}`, enc.encode(JSON.stringify({ id, channel: `#chan-${c}`, user_id: i % 2 ? null : `user${i}`, category: "fact", content: words(12, c * 10 + i), importance: 2, created_at: at, last_accessed: at })));
  }
  if (kind !== "memories") for (let i = 0; i < 10; i++) {
    await kv.put(`t.${ch}.${(1e9 + i).toString(36)}-00000-abc`, enc.encode(JSON.stringify({ user: `user${i}`, message: words(15, c + i), reply: words(30, c * 3 + i), at: 1 })));
  }
}
const g = () => { (globalThis as any).gc(); (globalThis as any).gc(); return process.memoryUsage().heapUsed; };
const config = defaultConfig({ memory: { cache_channels: 100000, cache_mb: 4000 } as never });
const mem = createMemory({ kv, config, clock: { now: () => Date.now() }, events: { emit: () => "", flush: async () => {} }, providers: { complete: async () => { throw new Error() }, status: () => [], current: () => ({ name: "", model: "" }), estimateTokens }, log: silentLogger });
const before = g();
for (let c = 0; c < N; c++) await mem.context(`#chan-${c}`, "u", "word5 word7", BUILTIN_PERSONAS[0]);
await mem.settled();
const after = g();
console.log(kind, "heap delta MB", ((after - before) / 1e6).toFixed(1), "estimate MB", (mem.cached().bytes / 1e6).toFixed(1), "channels", mem.cached().channels, "per channel real KB", ((after - before) / N / 1e3).toFixed(1));
