// Threshold events that are never lost silently.
//
// The compare-and-set that first takes a window past its threshold stores the event itself
// in the document it writes (`e`, with the period's marker in `f`), so exactly one writer of
// all instances crosses it. That writer then publishes the event with a Nats-Msg-Id derived
// from (scope, name, type, period); once the stream has acknowledged it, the entry is
// removed from the document by one more write. If the writer dies in between, or its
// publish gives up, the entry stays: the next instance that writes that document and finds
// it older than the grace period publishes it again with the same id (the stream's
// duplicate window drops a second copy that arrives within two minutes) and removes it.
// So an event is delayed until its user, channel or day is written again, never dropped;
// a republish after the duplicate window can store it twice — crashes err on the side of
// one more event, never one fewer.
import { createHash } from "node:crypto";
import type { Batcher } from "../kv";
import type { Events, Logger } from "../context/types";
import type { ThresholdEvent } from "../schemas";
import type { PendingEvent } from "./types";

/** How long an entry may wait for its first publisher before another instance republishes it. */
export const GRACE_MS = 30_000;

/** Deterministic event id of one threshold crossing: racing publishers produce the same one. */
export function thresholdEventId(scope: string, name: string | null, type: string, period: string): string {
  const h = createHash("sha256").update(`${scope}\n${name ?? ""}\n${type}\n${period}`).digest("hex");
  return `threshold-${h.slice(0, 40)}`;
}

/** A document with pending events. */
interface WithEvents {
  e?: PendingEvent[];
}

export interface Pending {
  /** The pending entry for a crossing at `now`. */
  crossing(ev: ThresholdEvent & { scope: "user" | "channel" | "global" }, name: string | null, now: number): PendingEvent;
  /**
   * The events of a document about to be written: the kept ones (acknowledged entries
   * dropped) plus `fired`, and the entries old enough to publish again.
   */
  tidy(cur: WithEvents | undefined, fired: PendingEvent[], now: number): { e: PendingEvent[] | undefined; stale: PendingEvent[] };
  /** Publishes events just written to `key`, then removes them from it. */
  publish(key: string, list: PendingEvent[]): void;
}

const ACKED_KEEP = 1024;

export function createPending(batcher: Batcher, events: Events, log: Logger): Pending {
  // Ids acknowledged by the stream but perhaps still in a document (most recent last).
  const acked = new Set<string>();
  // Ids this instance is publishing now: not started twice.
  const inFlight = new Set<string>();

  const drop = (key: string) =>
    batcher.submit<WithEvents, null>(key, -1, (cur) => {
      const e = cur?.e?.filter((p) => !acked.has(p.id));
      if (!cur || !cur.e || e!.length === cur.e.length) return { value: undefined, result: null };
      return { value: { ...cur, e: e!.length ? e : undefined }, result: null };
    });

  return {
    crossing(ev, name, now) {
      return { id: thresholdEventId(ev.scope, name, ev.threshold_type, ev.period ?? ""), at: now, ev };
    },

    tidy(cur, fired, now) {
      const kept = (cur?.e ?? []).filter((p) => !acked.has(p.id));
      const stale = kept.filter((p) => now - p.at >= GRACE_MS && !inFlight.has(p.id));
      const e = [...kept, ...fired];
      return { e: e.length ? e : undefined, stale };
    },

    publish(key, list) {
      for (const p of list) {
        if (inFlight.has(p.id)) continue;
        inFlight.add(p.id);
        let sent: Promise<string>;
        try {
          sent = events.publish
            ? events.publish("usage.threshold", p.ev, { id: p.id })
            : Promise.resolve(events.emit("usage.threshold", p.ev, { id: p.id }));
        } catch (err) {
          // A stored entry that no longer validates: nothing to retry; say so.
          inFlight.delete(p.id);
          log.error("threshold event not publishable", { id: p.id, error: (err as Error).message });
          continue;
        }
        sent
          .then(() => {
            acked.delete(p.id);
            acked.add(p.id);
            if (acked.size > ACKED_KEEP) acked.delete(acked.values().next().value!);
            return drop(key);
          })
          .catch((err) => log.warn("threshold event kept for a later publish", { id: p.id, key, error: (err as Error).message }))
          .finally(() => inFlight.delete(p.id));
      }
    },
  };
}
