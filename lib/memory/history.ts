// Conversation history of a channel: one key per exchange (question and reply written
// together, once per chat), and the newest messages that fit a context.
import { randomBytes } from "node:crypto";
import type { Clock } from "../context/types";
import { key } from "../keys";
import type { Message } from "../schemas";
import { turnIds, type ChannelState } from "./channel";
import type { Store } from "./store";
import type { StoredExchange } from "./types";

export interface History {
  /** Stores one exchange of the channel. */
  record(encoded: string, user: string, message: string, reply: string): Promise<void>;
}

export function createHistory(store: Store, clock: Clock): History {
  const tag = randomBytes(4).toString("base64url");
  let seq = 0;

  /**
   * Id of one exchange: it sorts by time, then this instance's sequence and tag. Older
   * per-turn keys used the same id with -0 (question) and -1 (answer) appended, so old and
   * new keys of one channel sort together by time.
   */
  const exchangeId = (): string =>
    `${Math.max(0, Math.floor(clock.now())).toString(36).padStart(9, "0")}-${(seq++ % 36 ** 5).toString(36).padStart(5, "0")}-${tag}`;

  return {
    async record(encoded, user, message, reply) {
      // Question and reply in one key: one write, and no reader ever sees one without the other.
      const exchange: StoredExchange = { user, message, reply, at: clock.now() };
      await store.append(key("t", encoded, exchangeId()), exchange);
    },
  };
}

/**
 * The newest history messages, at most `limit`, whose costs fit `budget` tokens, in order.
 * Stops at the first message that does not fit, so the history stays contiguous.
 */
export function recentHistory(st: ChannelState, limit: number, budget: number, cost: (m: Message) => number): Message[] {
  const out: Message[] = [];
  const ids = turnIds(st);
  let left = limit;
  newest: for (let i = ids.length - 1; i >= 0 && left > 0; i--) {
    const msgs = st.turns.get(ids[i])!;
    for (let j = msgs.length - 1; j >= 0 && left > 0; j--, left--) {
      const t = msgs[j];
      t.msg ??= Object.freeze(
        t.role === "user"
          ? ({ role: "user", content: `${t.user ?? "user"}: ${t.content}` } as Message)
          : ({ role: "assistant", content: t.content } as Message),
      );
      t.cost ??= cost(t.msg);
      budget -= t.cost;
      if (budget < 0) break newest;
      out.push(t.msg);
    }
  }
  return out.reverse();
}
