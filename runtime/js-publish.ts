// JetStream publishes (KV writes, events) through the connection's shared replies
// (replies.ts) instead of nats.js's `js.publish`, which builds a request object, a timer and,
// for every publish that ends, an Error with a stack trace (BENCHMARKS.md, end to end: ~6 % of
// the service's CPU); publishes made in one turn of the event loop go out in one socket write.
//
// Failures keep the shapes callers test for (provision.ts, kv.ts, storage.ts): a JetStream API
// error carries `api_error` {code, err_code, description}; no stream for the subject, code
// "503"; no acknowledgement within the timeout, code "TIMEOUT".
import { headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection } from "nats";
import { failure, replies } from "./replies";

/** Options of one publish, as nats.js's `js.publish` takes them. */
export interface PublishOptions {
  msgID?: string;
  expect?: { lastSubjectSequence?: number };
  headers?: MsgHdrs;
}

export type JsPublish = (subject: string, data: Uint8Array, opts?: PublishOptions) => Promise<{ seq: number }>;

const dec = new TextDecoder();

/** A publisher over `nc`. */
export function jetstreamPublisher(nc: NatsConnection, timeoutMs = 5_000): JsPublish {
  const r = replies(nc);
  return (subject, data, opts = {}) =>
    new Promise((resolve, reject) => {
      let h = opts.headers;
      if (opts.msgID !== undefined || opts.expect?.lastSubjectSequence !== undefined) {
        h ??= natsHeaders();
        if (opts.msgID !== undefined) h.set("Nats-Msg-Id", opts.msgID);
        if (opts.expect?.lastSubjectSequence !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(opts.expect.lastSubjectSequence));
      }
      // One reply: the acknowledgement, or why there is none.
      const settle = (err: Error | null, m: Msg | undefined) => {
        if (err || !m) return reject(err);
        if (m.headers?.code === 503) return reject(failure(`no stream answered ${subject}`, { code: "503" }));
        try {
          const ack = JSON.parse(dec.decode(m.data)) as { seq?: number; error?: { code: number; err_code?: number; description: string } };
          if (ack.error) reject(failure(ack.error.description, { api_error: ack.error, code: String(ack.error.code) }));
          else resolve({ seq: ack.seq! });
        } catch (e) {
          reject(e);
        }
      };
      r.request(subject, data, h, timeoutMs, (err, m) => (settle(err, m), true), reject);
    });
}
