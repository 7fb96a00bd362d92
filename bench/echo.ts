// The baseline of the end-to-end benchmark: a bare NATS micro endpoint, in its own process,
// that answers every request at once with a fixed body. Whatever the chat endpoint costs
// beyond this is the service's own overhead.
//
//   NATS_URL=nats://127.0.0.1:4222 ECHO_SUBJECT=bench.echo ECHO_REPLY_BYTES=200 node --import tsx bench/echo.ts
// Prints "ready" on stdout once the endpoint is subscribed; exits on SIGTERM or stdin close.
import { connect } from "nats";
import { onStop } from "./harness";

const url = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const subject = process.env.ECHO_SUBJECT ?? "bench.echo";
const size = Number(process.env.ECHO_REPLY_BYTES ?? 200);

/** A JSON reply of about `size` bytes, shaped like a chat reply. */
function replyBody(n: number): Uint8Array {
  const base = { success: true, content: "", tokens_used: 42, provider: "echo", model: "echo" };
  const pad = Math.max(0, n - JSON.stringify(base).length);
  return new TextEncoder().encode(JSON.stringify({ ...base, content: "x".repeat(pad) }));
}

async function main() {
  const nc = await connect({ servers: url, name: "bench-echo" });
  const body = replyBody(size);
  const srv = await nc.services.add({ name: "bench-echo", version: "0.0.1", queue: "bench-echo" });
  srv.addEndpoint("echo", { subject, handler: (_err, msg) => void msg.respond(body) });
  await nc.flush();
  process.stdout.write("ready\n");
  onStop(async () => {
    await srv.stop().catch(() => undefined);
    await nc.drain().catch(() => undefined);
    process.exit(0);
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
