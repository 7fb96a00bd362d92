// One subscription on a connection's own inbox root for every reply the service waits for
// on it (JetStream acknowledgements, batched direct gets): each request names `<root>.<n>` as
// its reply subject, and its handler gets what is sent there until it says it has had all.
// nats.js's own requests build a request object and a timer each and, for every request that
// ends, an Error with a stack trace; a subscription per batched get adds a SUB and an UNSUB
// to the wire. Here one timer a second fails the requests overdue, and what is asked in one
// turn of the event loop goes out together when it ends (setImmediate), so the client writes
// its socket once where it would write once per chain of promises (BENCHMARKS.md, end to end).
import { createInbox, type Msg, type MsgHdrs, type NatsConnection } from "nats";

interface Waiting {
  /** Takes one reply (or the subscription's error); true when no more are expected. */
  onReply(err: Error | null, m: Msg | undefined): boolean;
  fail(err: Error): void;
  deadline: number;
}

export interface Replies {
  /**
   * Publishes `data` to `subject` with a reply subject of its own. `onReply` gets each message
   * sent there until it returns true; `fail` gets a TIMEOUT after `timeoutMs` without that, or
   * the reason the connection closed.
   */
  request(
    subject: string,
    data: Uint8Array,
    headers: MsgHdrs | undefined,
    timeoutMs: number,
    onReply: Waiting["onReply"],
    fail: Waiting["fail"],
  ): void;
}

/** An error as callers classify them: `code` "TIMEOUT", "503", "CONNECTION_CLOSED". */
export const failure = (message: string, fields: object) => Object.assign(new Error(message), fields);

const perConnection = new WeakMap<NatsConnection, Replies>();

/** The replies of `nc`, made on first use. */
export function replies(nc: NatsConnection): Replies {
  let r = perConnection.get(nc);
  if (!r) perConnection.set(nc, (r = create(nc)));
  return r;
}

function create(nc: NatsConnection): Replies {
  // nats.js keeps the connection's inbox root in its options, which its public type does not show.
  const root = createInbox((nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
  const waiting = new Map<string, Waiting>();
  let next = 0;
  let queue: Array<{ subject: string; data: Uint8Array; reply: string; headers?: MsgHdrs }> = [];

  nc.subscribe(`${root}.*`, {
    callback(err, m) {
      const id = m?.subject.slice(root.length + 1);
      const w = id === undefined ? undefined : waiting.get(id);
      if (w && w.onReply(err, m)) waiting.delete(id!);
    },
  });
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [id, w] of waiting) {
      if (w.deadline > now) continue;
      waiting.delete(id);
      w.fail(failure("no reply in time", { code: "TIMEOUT" }));
    }
  }, 1_000);
  sweep.unref();
  void nc.closed().then(() => {
    clearInterval(sweep);
    for (const w of waiting.values()) w.fail(failure("connection closed", { code: "CONNECTION_CLOSED" }));
    waiting.clear();
  });

  /** Sends what was asked since the last turn, in one go. */
  function send(): void {
    const out = queue;
    queue = [];
    for (const q of out) {
      try {
        nc.publish(q.subject, q.data, { reply: q.reply, headers: q.headers });
      } catch (err) {
        const id = q.reply.slice(root.length + 1);
        waiting.get(id)?.fail(err as Error);
        waiting.delete(id);
      }
    }
  }

  return {
    request(subject, data, headers, timeoutMs, onReply, fail) {
      const id = String(next++);
      waiting.set(id, { onReply, fail, deadline: Date.now() + timeoutMs });
      if (queue.push({ subject, data, reply: `${root}.${id}`, headers }) === 1) setImmediate(send);
    },
  };
}
