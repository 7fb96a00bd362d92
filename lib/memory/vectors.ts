// Recall by meaning, the memory's side of it. A memory's embedding is stored inside its value
// in the bucket (`embedding`: the model and the unit vector as base64 of float32
// little-endian values), so it is loaded with the channel, counted in its bytes and deleted
// with the memory; it never reaches a reply (channel.ts parses it apart). Besides that: the
// vector of a query (one embedding call, through a small cache), the embedding of a memory
// being added, and a backfill that embeds, a few at a time in the background, memories
// stored without one (added while embeddings were off or failing, or with another model).
//
// Nothing here fails a request: without an embedder, while it fails, or in a channel with no
// vectors of its model, recall is by words only. The embedder logs its failures.
import type { Clock } from "../context/types";
import { key } from "../keys";
import { refusedText, type Embedder } from "../providers/embeddings";
import type { Doc } from "./bm25";
import type { ChannelState } from "./channel";
import type { Store } from "./store";
import { terms } from "./text";
import { decodeEmbedding, encodeEmbedding, type MemoryVector } from "./embedding";
import type { StoredEmbedding, StoredMemory } from "./types";

/** Query vectors kept, most recently used last. */
export const QUERY_CACHE = 256;
/** A query is embedded by its first this many characters (a memory holds at most as many). */
export const QUERY_CHARS = 2_000;
/** Memories embedded by one backfill request. */
export const BACKFILL_BATCH = 16;
/** Backfill requests start at most this often on an instance, and one at a time. */
export const BACKFILL_EVERY_MS = 1_000;
/** Memories whose text the server refused, not offered again (cleared when full). */
const REFUSED_KEPT = 1_024;

export interface Vectors {
  /** The query's vector, when the channel holds vectors of the embedder's model to compare it with. */
  query(st: ChannelState, text: string): Promise<MemoryVector | undefined>;
  /** The embedding to store with memory `id` of this text; undefined when it has one already or none can be had. */
  document(st: ChannelState, id: string, text: string): Promise<StoredEmbedding | undefined>;
  /** Starts embedding some of the channel's memories that have no vector of the model, in the background. */
  backfill(encoded: string, st: ChannelState): void;
}

/** Embeddings off: every call is a no-op. */
const NONE: Vectors = { query: async () => undefined, document: async () => undefined, backfill: () => {} };

export function createVectors(store: Store, embedder: Embedder | undefined, clock: Clock): Vectors {
  if (!embedder) return NONE;
  const { model } = embedder;
  /** Query text → vector, least recently used first. */
  const queries = new Map<string, Float32Array>();
  /** Keys of memories whose text the server refused. */
  const refused = new Set<string>();
  let backfilling = false;
  let backfilledAt = -Infinity;

  async function embedQuery(text: string): Promise<Float32Array | undefined> {
    const cached = queries.get(text);
    if (cached) {
      queries.delete(text);
      queries.set(text, cached);
      return cached;
    }
    try {
      const [v] = await embedder!.embed([text], "query");
      queries.set(text, v);
      if (queries.size > QUERY_CACHE) queries.delete(queries.keys().next().value!);
      return v;
    } catch {
      return undefined;
    }
  }

  /** Embeds the memories and stores each vector with its memory, unless it changed meanwhile. */
  async function backfill(encoded: string, todo: Doc[]): Promise<void> {
    let vectors: Float32Array[];
    try {
      vectors = await embedder!.embed(todo.map((d) => d.memory.content), "document");
    } catch (err) {
      if (refusedText(err)) {
        if (refused.size + todo.length > REFUSED_KEPT) refused.clear();
        for (const d of todo) refused.add(key("m", encoded, d.memory.id));
      }
      return;
    }
    await Promise.all(
      todo.map((d, i) =>
        store.cas<StoredMemory>(key("m", encoded, d.memory.id), (cur) => ({
          value:
            cur && cur.content === d.memory.content && decodeEmbedding(cur.embedding)?.model !== model
              ? { ...cur, embedding: encodeEmbedding(model, vectors[i]) }
              : undefined,
          result: undefined,
        })),
      ),
    );
  }

  return {
    async query(st, text) {
      if (!embedder.available() || terms(text).length === 0) return undefined;
      let holds = false;
      for (const v of st.vectors.values()) if ((holds = v.model === model)) break;
      if (!holds) return undefined;
      const vector = await embedQuery(text.slice(0, QUERY_CHARS));
      return vector && { model, vector };
    },

    async document(st, id, text) {
      if (!embedder.available() || st.vectors.get(id)?.model === model) return undefined;
      try {
        const [v] = await embedder.embed([text], "document");
        return encodeEmbedding(model, v);
      } catch {
        return undefined;
      }
    },

    backfill(encoded, st) {
      const now = clock.now();
      if (backfilling || now - backfilledAt < BACKFILL_EVERY_MS || !embedder.available()) return;
      const todo: Doc[] = [];
      for (const d of st.memories.values()) {
        if (st.vectors.get(d.memory.id)?.model === model || refused.has(key("m", encoded, d.memory.id))) continue;
        if (todo.push(d) === BACKFILL_BATCH) break;
      }
      if (todo.length === 0) return;
      backfilling = true;
      backfilledAt = now;
      store.background(
        "embedding backfill",
        backfill(encoded, todo).finally(() => (backfilling = false)),
      );
    },
  };
}
