// Replays events from the ROSEY_LLM_EVENTS stream by time or sequence, optionally filtered
// by event type, with an ordered (ephemeral) consumer: nothing is left on the server.
import { DeliverPolicy, type JetStreamClient, type OrderedConsumerOptions } from "nats";
import { EVENTS_STREAM } from "./provision";

/** Parses `90s`, `30m`, `1h`, `2d` or an ISO date into the start time. */
export function parseSince(text: string, now = Date.now()): Date {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)$/.exec(text.trim());
  if (m) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
    return new Date(now - Number(m[1]) * unit);
  }
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) throw new Error(`--since: expected a duration like 1h or 30m, or a date; got "${text}"`);
  return d;
}

export interface ReplayOptions {
  prefix: string;
  since?: Date;
  startSeq?: number;
  /** Event type (`response`, `error`, `usage.threshold` …); all when unset. */
  type?: string;
  /** Keep waiting for new events instead of stopping at the end of the stream. */
  follow?: boolean;
  signal?: AbortSignal;
}

export interface ReplayedEvent {
  seq: number;
  subject: string;
  event: Record<string, unknown>;
}

/** Yields stored events in order; without `follow` it stops at the stream's end. */
export async function* replayEvents(js: JetStreamClient, opts: ReplayOptions): AsyncGenerator<ReplayedEvent> {
  const filter = `${opts.prefix}.event.llm.${opts.type ?? ">"}`;
  const copts: Partial<OrderedConsumerOptions> = { filterSubjects: [filter] };
  if (opts.startSeq) {
    copts.deliver_policy = DeliverPolicy.StartSequence;
    copts.opt_start_seq = opts.startSeq;
  } else if (opts.since) {
    copts.deliver_policy = DeliverPolicy.StartTime;
    copts.opt_start_time = opts.since.toISOString();
  }
  const consumer = await js.consumers.get(EVENTS_STREAM, copts);
  try {
    while (!opts.signal?.aborted) {
      const batch = await consumer.fetch({ max_messages: 256, expires: 1_000 });
      let got = 0;
      let caughtUp = false;
      for await (const m of batch) {
        got++;
        let event: Record<string, unknown>;
        try {
          event = m.json<Record<string, unknown>>();
        } catch {
          event = { event: "unparseable", raw: m.string().slice(0, 200) };
        }
        yield { seq: m.seq, subject: m.subject, event };
        caughtUp = m.info.pending === 0;
      }
      if (!opts.follow && (got === 0 || caughtUp)) return;
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
}
