// Last-resort handlers of the `rosey-llm start` process. Every request path awaits its own
// promises and answers its own errors, so what reaches these is work nobody was waiting
// for (a watch loop, a fire-and-forget write) or a bug:
//   - an unhandled rejection is logged and the process keeps serving. The rejection ended
//     one asynchronous task and interrupted no synchronous code, so everything else is as
//     it was; exiting (Node's default) would turn one failed background task into an
//     outage, and into a crash loop when the cause is stored data read at every start.
//   - an uncaught exception is logged, then the process drains (no new requests, those in
//     flight answered, events flushed) and exits with status 1. A synchronous throw may
//     have left some state half-updated, so serving on is not safe; dying on the spot would
//     drop every request in flight. A second one, or a drain that outlasts `drainMs`, exits
//     at once.
// Hosts that embed the runtime (runtime/index.ts) decide their own process policy.
import type { Logger } from "../lib/context";

/** Message and stack of anything thrown, for a log line. */
const describe = (e: unknown) => (e instanceof Error ? { error: e.message, stack: e.stack } : { error: String(e) });

export function installLastResort(log: Logger, drain: () => Promise<void>, drainMs: number): void {
  let failing = false;
  process.on("unhandledRejection", (reason) => {
    log.error("unhandled rejection: serving on", describe(reason));
  });
  process.on("uncaughtException", (err) => {
    log.error("uncaught exception: draining, then exiting", describe(err));
    if (failing) process.exit(1);
    failing = true;
    // A signal's shutdown that finishes this drain first exits with this status too.
    process.exitCode = 1;
    setTimeout(() => {
      log.error("drain did not finish in time: exiting now", { drain_ms: drainMs });
      process.exit(1);
    }, drainMs).unref();
    drain()
      .catch((e: unknown) => log.error("drain failed", describe(e)))
      .finally(() => process.exit(1));
  });
}
