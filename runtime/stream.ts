// Streamed replies over NATS. A request with `stream: true` gets its reply in pieces: chunk
// messages (header `Rosey-Stream: chunk`, body a StreamChunk) published to its reply
// subject as the model writes, then the usual final reply, sent by the endpoint.
//
// Noticing that the caller stopped listening: a core NATS publish to a subject nobody
// subscribes to is silently dropped, so each chunk is published with a reply subject of
// this instance's own (`<inbox root>.<nuid>.<stream id>`). While the caller's subscription
// exists the server delivers the chunk and nothing comes back; once it is gone (the caller
// unsubscribed, timed out, disconnected) the server answers the next chunk with a 503 "no
// responders" status on that reply subject, and the stream's signal aborts, which cancels
// the provider call. Any message there counts: a caller allowed to answer a chunk may also
// cancel that way. Costs nothing while the caller listens: no acknowledgements, no timers.
import { createInbox, headers, type MsgHdrs, type NatsConnection } from "nats";
import type { ReplyStream } from "../lib/context";
import { STREAM_HEADER } from "../lib/schemas";

/** A stream the endpoint holds: the handler's side, the cancel signal and the end. */
export interface OpenStream extends ReplyStream {
  /** Aborts (an AbortError) when the caller stopped listening. */
  readonly signal: AbortSignal;
  /** Ends the stream: later pieces are dropped, its reply subject is let go. */
  close(): void;
}

/** Opens streams to reply subjects; one subscription per instance watches them all. */
export interface Streams {
  open(replyTo: string): OpenStream;
  /** Streams open now (each ends with its request). */
  readonly size: number;
  close(): void;
}

const enc = new TextEncoder();

/** The reason a stream's signal aborts with: a cancel, not a deadline (see isDeadlineReason). */
const lostInterest = () => new DOMException("the caller stopped listening", "AbortError");

/** Watches `<inboxRoot>.<nuid>.*` for lost interest and opens streams on `nc`. */
export function createStreams(nc: NatsConnection, inboxRoot: string): Streams {
  const root = createInbox(inboxRoot);
  // One entry per open stream, removed when its request ends: bounded by the requests in flight.
  const open = new Map<string, AbortController>();
  let seq = 0;
  const sub = nc.subscribe(`${root}.*`, {
    callback: (err, msg) => {
      if (!err) open.get(msg.subject.slice(root.length + 1))?.abort(lostInterest());
    },
  });
  let hdrs: MsgHdrs | undefined;
  const chunkHeaders = () => {
    if (!hdrs) (hdrs = headers()).set(STREAM_HEADER.name, STREAM_HEADER.chunk);
    return hdrs;
  };

  return {
    open(replyTo) {
      const id = (++seq).toString(36);
      const ctl = new AbortController();
      open.set(id, ctl);
      const probe = `${root}.${id}`;
      let index = 0;
      let closed = false;
      return {
        signal: ctl.signal,
        send: (delta) => {
          if (closed || ctl.signal.aborted || !delta) return;
          try {
            nc.publish(replyTo, enc.encode(JSON.stringify({ delta, index: index++ })), { headers: chunkHeaders(), reply: probe });
          } catch (err) {
            // A piece that cannot go out (the connection closed, larger than max_payload)
            // leaves the caller with a gap: the rest of the reply is not worth making.
            ctl.abort(new DOMException(`a chunk could not be sent: ${(err as Error).message}`, "AbortError"));
          }
        },
        close() {
          closed = true;
          open.delete(id);
        },
      };
    },
    get size() {
      return open.size;
    },
    close: () => sub.unsubscribe(),
  };
}
