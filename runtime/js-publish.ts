// JetStream publishes (KV writes, events) without nats.js's request machinery: one
// subscription on the connection's own inbox root takes every acknowledgement, matched by a
// counter in its reply subject, and one timer a second fails the ones overdue. nats.js's
// `js.publish` builds a request object and a timer per publish and, for every request that
// ends, an Error with a stack trace (BENCHMARKS.md, end to end: ~6 % of the service's CPU).
//
// Publishes made while the event loop runs one batch of callbacks are sent together when it
// is done (setImmediate): the client then writes them to its socket in one write, where it
// would otherwise write once per chain of promises that made one. Socket writes were the
// largest share of the service's CPU (BENCHMARKS.md).
//
// Failures keep the shapes callers test for (provision.ts, kv.ts, storage.ts): a JetStream API
// error carries `api_error` {code, err_code, description}; no stream for the subject, code
// "503"; no acknowledgement within the timeout, code "TIMEOUT".
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "nats";
import { ownInbox } from "./connect";

/** Options of one publish, as nats.js's `js.publish` takes them. */
export interface PublishOptions {
  msgID?: string;
  expect?: { lastSubjectSequence?: number };
  headers?: MsgHdrs;
}

export type JsPublish = (subject: string, data: Uint8Array, opts?: PublishOptions) => Promise<{ seq: number }>;

interface Waiting {
  resolve(ack: { seq: number }): void;
  reject(err: unknown): void;
  deadline: number;
}

const dec = new TextDecoder();

/** An error as callers classify them (see the header). */
const failure = (message: string, fields: object) => Object.assign(new Error(message), fields);

/** A publisher over `nc`, whose acknowledgements come to the connection's inbox root. */
export function jetstreamPublisher(nc: NatsConnection, timeoutMs = 5_000): JsPublish {
  const root = ownInbox(nc);
  const waiting = new Map<string, Waiting>();
  let next = 0;
  let queue: Array<{ subject: string; data: Uint8Array; reply: string; headers?: MsgHdrs }> = [];

  nc.subscribe(`${root}.*`, {
    callback(err, m) {
      const id = m?.subject.slice(root.length + 1);
      const w = id === undefined ? undefined : waiting.get(id);
      if (!w) return;
      waiting.delete(id!);
      if (err) return w.reject(err);
      if (m.headers?.code === 503) return w.reject(failure(`no stream answered ${m.subject}`, { code: "503" }));
      try {
        const ack = JSON.parse(dec.decode(m.data)) as { seq?: number; error?: { code: number; err_code?: number; description: string } };
        if (ack.error) return w.reject(failure(ack.error.description, { api_error: ack.error, code: String(ack.error.code) }));
        w.resolve({ seq: ack.seq! });
      } catch (e) {
        w.reject(e);
      }
    },
  });
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [id, w] of waiting) {
      if (w.deadline > now) continue;
      waiting.delete(id);
      w.reject(failure("no acknowledgement in time", { code: "TIMEOUT" }));
    }
  }, 1_000);
  sweep.unref();
  void nc.closed().then(() => {
    clearInterval(sweep);
    for (const w of waiting.values()) w.reject(failure("connection closed", { code: "CONNECTION_CLOSED" }));
    waiting.clear();
  });

  return (subject, data, opts = {}) =>
    new Promise((resolve, reject) => {
      let h = opts.headers;
      if (opts.msgID !== undefined || opts.expect?.lastSubjectSequence !== undefined) {
        h ??= natsHeaders();
        if (opts.msgID !== undefined) h.set("Nats-Msg-Id", opts.msgID);
        if (opts.expect?.lastSubjectSequence !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(opts.expect.lastSubjectSequence));
      }
      const id = String(next++);
      waiting.set(id, { resolve, reject, deadline: Date.now() + timeoutMs });
      if (queue.push({ subject, data, reply: `${root}.${id}`, headers: h }) === 1) setImmediate(send);
    });

  /** Sends the queued publishes in one go: the client writes them to its socket in one write. */
  function send(): void {
    const out = queue;
    queue = [];
    for (const m of out) {
      try {
        nc.publish(m.subject, m.data, { reply: m.reply, headers: m.headers });
      } catch (err) {
        const id = m.reply.slice(root.length + 1);
        waiting.get(id)?.reject(err);
        waiting.delete(id);
      }
    }
  }
}
