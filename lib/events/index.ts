// Event envelopes (docs/contract.md "Events"): validated against their zod schema, then published
// to JetStream with Nats-Msg-Id = id so a retried or raced publish is stored once.
// Publishing happens in the background so a reply never waits on the stream; `flush`
// (called when the runtime drains) waits for everything in flight.
import { randomUUID } from "node:crypto";
import type { z } from "zod";
import { EventEnvelope, EventPayloads, type EventName, type EventPayload } from "../schemas";
import type { Clock, Events, Logger } from "../context/types";

/** Publishes bytes to a subject with a dedupe id and resolves once JetStream acknowledged. */
export type EventSink = (subject: string, data: Uint8Array, msgId: string) => Promise<void>;

export interface EventsOptions {
  prefix: string;
  service: string;
  instance: string;
  sink: EventSink;
  clock: Clock;
  log: Logger;
  /** Publish attempts before an event is given up (logged). */
  attempts?: number;
}

/** The subject of an event: `<prefix>.event.llm.<name>`. */
export const eventSubject = (prefix: string, name: EventName) => `${prefix}.event.llm.${name}`;

/**
 * Envelope and payload of each event as one schema (envelope fields first, as published), so
 * an event is validated in a single parse that also builds the object to publish: two
 * parses and a merge of their results were a visible share of a chat's CPU.
 */
const EventSchemas = Object.fromEntries(
  Object.entries(EventPayloads).map(([name, payload]) => [name, EventEnvelope.extend(payload.shape)]),
) as unknown as Record<EventName, z.ZodType<Record<string, unknown>>>;

/** Builds the full envelope for a payload, validating both. Throws on an invalid payload. */
export function envelope<N extends EventName>(
  name: N,
  payload: EventPayload<N>,
  meta: { id: string; timestamp: string; service: string; instance: string },
): Record<string, unknown> {
  // The envelope's fields are set after the payload's: a payload cannot replace them.
  return EventSchemas[name].parse({
    ...payload,
    event: name,
    version: 1,
    id: meta.id,
    timestamp: meta.timestamp,
    source: { service: meta.service, instance: meta.instance },
  });
}

const enc = new TextEncoder();

export function createEvents(opts: EventsOptions): Events {
  const pending = new Set<Promise<unknown>>();
  const attempts = opts.attempts ?? 5;

  const send = async (subject: string, data: Uint8Array, id: string) => {
    for (let i = 1; ; i++) {
      try {
        return await opts.sink(subject, data, id);
      } catch (err) {
        if (i >= attempts) {
          opts.log.error("event publish failed", { subject, id, error: (err as Error).message });
          throw err;
        }
        await new Promise((r) => setTimeout(r, 50 * 2 ** i));
      }
    }
  };

  const publish: NonNullable<Events["publish"]> = (name, payload, o) => {
    const id = o?.id ?? randomUUID();
    const env = envelope(name, payload, {
      id,
      timestamp: new Date(opts.clock.now()).toISOString(),
      service: opts.service,
      instance: opts.instance,
    });
    const p = send(eventSubject(opts.prefix, name), enc.encode(JSON.stringify(env)), id).then(() => id);
    pending.add(p);
    void p.catch(() => undefined).finally(() => pending.delete(p));
    return p;
  };

  return {
    publish,
    emit(name, payload, o) {
      const id = o?.id ?? randomUUID();
      // A publish that gives up is logged by send.
      publish(name, payload, { id }).catch(() => undefined);
      return id;
    },
    async flush() {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
  };
}
