// Long-term memories of a channel: adding (content-addressed, merged with a near-duplicate),
// recall through the channel's BM25 index, forgetting, and the upkeep around them — the
// per-channel cap, decay of memories unused for decay_days, and last_accessed touches.
import { createHash } from "node:crypto";
import type { AddMemory, Clock } from "../context/types";
import type { Config } from "../config";
import { key } from "../keys";
import type { Memory } from "../schemas";
import type { Doc, Ranked } from "./bm25";
import type { ChannelState } from "./channel";
import { fusedSearch } from "./fusion";
import type { Store } from "./store";
import { canonical, terms } from "./text";
import type { StoredMemory } from "./types";
import type { MemoryVector } from "./embedding";
import type { Vectors } from "./vectors";

/** Recall rewrites last_accessed at most this often per memory, to spare the bucket. */
export const TOUCH_EVERY_MS = 60_000;
/** Decayed memories of a channel are swept at most this often. */
export const SWEEP_EVERY_MS = 60_000;
const DAY_MS = 86_400_000;

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * The order in which memories leave a full channel, first out first: less important, then used
 * longer ago, then older, then by id — the same on every instance. A memory just added was used
 * last, so it goes first only when every other memory of the channel is more important.
 */
export const keepOrder = (a: Doc, b: Doc) =>
  a.memory.importance - b.memory.importance || a.accessed - b.accessed || a.created - b.created || (a.memory.id < b.memory.id ? -1 : 1);

/** Content-addressed id: the same fact in the same scope always lands on one key. */
const memoryId = (userId: string | null, content: string) =>
  createHash("sha256")
    .update(`${userId ?? ""}\n${canonical(content) || content.trim()}`)
    .digest("base64url")
    .slice(0, 22);

export interface Facts {
  /**
   * The best `limit` memories visible to `userId` for the query, recorded as used: by words,
   * and by meaning too when the query's vector is given.
   */
  find(encoded: string, st: ChannelState, query: string, userId: string | null, limit: number, vector?: MemoryVector): Memory[];
  add(encoded: string, st: ChannelState, m: AddMemory): Promise<Memory>;
  forget(encoded: string, st: ChannelState, q: { id?: string; user_id?: string }): Promise<number>;
}

export function createFacts(store: Store, config: Config, clock: Clock, vectors: Vectors): Facts {
  const mc = config.memory;
  const decayMs = mc.decay_days * DAY_MS;
  const visibleTo = (userId: string | null, at: number) => (d: Doc) =>
    (d.memory.user_id === null || d.memory.user_id === userId) && at - d.accessed <= decayMs;

  /** Drops memories not used for decay_days (at most once a minute per channel). */
  function sweep(encoded: string, st: ChannelState, at: number): void {
    if (at - st.sweptAt < SWEEP_EVERY_MS) return;
    st.sweptAt = at;
    const dead = [...st.memories.values()].filter((d) => at - d.accessed > decayMs);
    if (dead.length === 0) return;
    store.background("decay sweep", Promise.all(dead.map((d) => store.remove(key("m", encoded, d.memory.id)))));
  }

  /** Records that memories were used, in the channel now and in KV in the background. */
  function touch(encoded: string, st: ChannelState, found: Ranked[], at: number): Memory[] {
    const out: Memory[] = [];
    for (const { doc } of found) {
      if (at - doc.accessed >= TOUCH_EVERY_MS) {
        st.memories.touch(doc.memory.id, at);
        store.background(
          "touch",
          store.cas<Memory>(key("m", encoded, doc.memory.id), (cur) => ({
            value: cur && Date.parse(cur.last_accessed) < at ? { ...cur, last_accessed: iso(at) } : undefined,
            result: undefined,
          })),
        );
      }
      out.push(doc.memory);
    }
    return out;
  }

  /**
   * Keeps the channel at its cap: the least important, least recently used memories above it go.
   * The channel is read again after the add's write, and every instance picks victims in one
   * order (keepOrder). Of adds racing on several instances, the one whose read starts last sees
   * all of them and brings the channel down to the cap; the others see a part of what it sees,
   * so their victims are among its victims. The channel never ends above the cap.
   */
  async function enforceCap(encoded: string): Promise<void> {
    const st = await store.channel(encoded);
    const over = st.memories.size - mc.max_memories_per_channel;
    if (over <= 0) return;
    const victims = [...st.memories.values()].sort(keepOrder).slice(0, over);
    await Promise.all(victims.map((d) => store.remove(key("m", encoded, d.memory.id))));
  }

  return {
    find(encoded, st, query, userId, limit, vector) {
      if (st.memories.size === 0 || limit <= 0) return [];
      const at = clock.now();
      const visible = visibleTo(userId, at);
      const q = terms(query);
      // A query with no searchable word (all stop words) asks for what matters most.
      const found =
        q.length === 0
          ? st.memories.top(visible, limit)
          : vector
            ? fusedSearch(st, q, vector, visible, limit)
            : st.memories.search(q, visible, limit);
      sweep(encoded, st, at);
      return touch(encoded, st, found, at);
    },

    async add(encoded, st, m) {
      const userId = m.user_id ?? null;
      const at = clock.now();
      const near = st.memories.nearDuplicate(m.content, userId);
      const id = near?.memory.id ?? memoryId(userId, m.content);
      // One embedding call before the write, so the memory is stored with its vector; when
      // none can be had it is stored without, and the backfill embeds it later.
      const embedding = await vectors.document(st, id, near?.memory.content ?? m.content);
      const fresh: StoredMemory = {
        id,
        channel: m.channel,
        user_id: userId,
        category: m.category,
        content: m.content,
        importance: m.importance,
        created_at: iso(at),
        last_accessed: iso(at),
        ...(embedding && { embedding }),
      };
      // CAS: the same fact may be added on another instance right now; both meet on this key.
      const r = await store.cas<StoredMemory>(key("m", encoded, id), (cur) => ({
        value: cur
          ? {
              ...cur,
              importance: Math.max(cur.importance, m.importance),
              last_accessed: iso(Math.max(at, Date.parse(cur.last_accessed))),
              ...(embedding && { embedding }),
            }
          : fresh,
        result: undefined,
      }));
      await enforceCap(encoded);
      sweep(encoded, st, at);
      // The reply carries the memory, never its vector.
      const { embedding: _vector, ...stored } = r.value!;
      return stored;
    },

    async forget(encoded, st, q) {
      let victims: string[];
      if (q.id !== undefined) {
        const d = /^[A-Za-z0-9_-]+$/.test(q.id) ? st.memories.get(q.id) : undefined;
        if (!d || (q.user_id !== undefined && d.memory.user_id !== q.user_id)) return 0;
        victims = [q.id];
      } else {
        victims = [...st.memories.values()].filter((d) => d.memory.user_id === q.user_id).map((d) => d.memory.id);
      }
      await Promise.all(victims.map((id) => store.remove(key("m", encoded, id))));
      return victims.length;
    },
  };
}
