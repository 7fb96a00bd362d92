// V8 heap settings of a service instance. By default V8 lets the old generation grow to
// several times what is live before collecting it, and keeps 2 × 16 MiB of young generation:
// measured over 10,000 chats in 1,000 channels (one instance, offline provider), the heap held
// 27 MiB of live objects while the process took 187–197 MiB. The instance keeps little for
// long (its caches are bounded), so a smaller growing factor and young generation cost little
// CPU and keep RSS near what is live (BENCHMARKS.md, "Scale").
//
//   growing factor   set here at start (it is read at every collection, so setting it now takes
//                    effect); an operator's own --heap-growing-percent wins.
//   young generation fixed when V8 starts, so only a command-line flag sets it: `npm start`
//                    passes NODE_FLAGS; started otherwise, pass them yourself (NODE_OPTIONS
//                    accepts --max-semi-space-size).
import v8 from "node:v8";

/**
 * The old generation grows to live × 1.45 before a full collection (V8's default: up to × 4).
 * Measured over 10,000 chats in 1,000 channels (service CPU, RSS after): V8's default 10.8 s /
 * 187 MiB with little cached, 13.8 s / 325 MiB with 1,000 full channels cached; × 1.45 11.0 s /
 * 123 MiB and 15.0 s / 188 MiB; × 1.3 saved 7–8 MiB more for 15–50 % more CPU.
 */
export const HEAP_GROWING_PERCENT = 45;

/** Flags `npm start` runs node with (package.json; test/heap.test.ts keeps them in step). */
export const NODE_FLAGS = ["--max-semi-space-size=8"] as const;

/** Applies the growing factor unless node was started with one. */
export function tuneHeap(execArgv: readonly string[] = process.execArgv): void {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent/.test(a))) return;
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
