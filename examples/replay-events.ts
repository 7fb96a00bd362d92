// Replays rosey-llm events from the ROSEY_LLM_EVENTS stream by time and type and prints them,
// one line each. Two ways to read:
//   - ordered consumer (default): ephemeral, nothing left on the server; every run starts at --since.
//   - --durable NAME: a durable pull consumer that acknowledges what it read, so the next run
//     with the same name resumes where this one stopped (how a reporting plugin would consume).
//
//   NATS_URL=nats://127.0.0.1:4222 node --import tsx examples/replay-events.ts --since 1h --type response
//   node --import tsx examples/replay-events.ts --since 2d --durable my-report --json
//
// Options: --since 90s|30m|1h|2d|<ISO date> (default 1h), --type response|error|memory|summarized|
// usage.threshold (default all), --durable NAME, --json (print the raw envelope),
// --prefix (ROSEY_SUBJECT_PREFIX, default rosey).
import { parseArgs } from "node:util";
import { AckPolicy, DeliverPolicy, connect, type JetStreamClient, type JetStreamManager } from "nats";
import { createClient, EVENTS_STREAM, parseSince } from "../lib/client";

const { values: args } = parseArgs({
  options: {
    since: { type: "string", default: "1h" },
    type: { type: "string" },
    durable: { type: "string" },
    json: { type: "boolean", default: false },
    prefix: { type: "string", default: process.env.ROSEY_SUBJECT_PREFIX ?? "rosey" },
  },
});

type Event = Record<string, unknown>;

/** One readable line per event: when, what, where, and the fields that matter for its type. */
function line(seq: number, e: Event): string {
  if (args.json) return JSON.stringify({ seq, ...e });
  const where = `${e.channel ?? "-"} ${e.user ?? e.user_id ?? "-"}`;
  const detail: Record<string, (e: Event) => string> = {
    response: (e) => `${e.provider}/${e.model} ${e.tokens_used} tokens ${e.latency_ms} ms`,
    error: (e) => `${e.error_type}: ${e.error}`,
    memory: (e) => `${e.action} count=${e.memory_count}`,
    summarized: (e) => `${e.message_count} messages → ${e.summary_length} chars`,
    "usage.threshold": (e) => `${e.threshold_type} ${e.current}/${e.limit}`,
  };
  const what = String(e.event);
  return `#${seq} ${e.timestamp} ${what} ${where} ${detail[what]?.(e) ?? ""}`.trimEnd();
}

/** Reads with a durable consumer, acknowledging each event so the next run resumes after it. */
async function replayDurable(js: JetStreamClient, jsm: JetStreamManager, name: string, since: Date, filter: string): Promise<number> {
  try {
    await jsm.consumers.info(EVENTS_STREAM, name);
  } catch {
    // First run under this name: the consumer starts at --since; later runs ignore --since.
    await jsm.consumers.add(EVENTS_STREAM, {
      durable_name: name,
      filter_subject: filter,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: since.toISOString(),
    });
  }
  const consumer = await js.consumers.get(EVENTS_STREAM, name);
  let n = 0;
  // Bounded batches until the consumer has nothing pending: a replay, not a follower.
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 256, expires: 1_000 });
    let got = 0;
    let pending = 0;
    for await (const m of batch) {
      got++;
      pending = m.info.pending;
      console.log(line(m.seq, m.json<Event>()));
      await m.ackAck(); // confirmed, so a run that stops right after still resumes here
      n++;
    }
    if (got === 0 || pending === 0) break;
  }
  return n;
}

const nc = await connect({ servers: (process.env.NATS_URL ?? "nats://127.0.0.1:4222").split(","), name: "example-replay-events" });
try {
  const js = nc.jetstream();
  const since = parseSince(args.since!);
  let n = 0;
  if (args.durable) {
    const filter = `${args.prefix}.event.llm.${args.type ?? ">"}`;
    n = await replayDurable(js, await nc.jetstreamManager(), args.durable, since, filter);
  } else {
    const llm = createClient(nc, { prefix: args.prefix });
    for await (const { seq, event } of llm.events(js, { since, type: args.type })) {
      console.log(line(seq, event));
      n++;
    }
  }
  console.error(`replayed ${n} event(s)`);
} finally {
  // Flush the acks before the connection goes.
  await nc.drain();
}
