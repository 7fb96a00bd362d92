// Conversation memory of every channel, over the ROSEY_LLM_MEMORY bucket: history,
// summaries and long-term memories (keys in channel.ts).
//
// Only channels in use are held in RAM (store.ts, over lib/kv/group-cache.ts): a channel is
// loaded on its first use, brought up to date with the bucket before each later use (one round
// trip, nothing when no other instance wrote; none at all when a chat's admission proved it
// current, see limits-doc.ts), and evicted, least recently used first, past the configured
// count and size. So an instance's memory follows its active channels, not
// what is stored, and every read sees what any instance stored before it began.
//
// With an embedder (config.embeddings), memories are stored with their vectors and recall
// fuses words and meaning (vectors.ts, fusion.ts); each use of a channel may start embedding a
// few of its memories stored without one.
//
// The channel's persona selection is one of its keys too (selections.ts): a chat's one read of
// the channel brings it along with the history and memories.
import { randomBytes } from "node:crypto";
import type { PreparedChannel } from "../context/types";
import type { Memory } from "../schemas";
import { encodeName, key } from "../keys";
import type { ChannelState } from "./channel";
import { createContextBuilder } from "./context";
import { createFacts } from "./facts";
import { createHistory } from "./history";
import { channelLimits } from "./limits-doc";
import { createSelections } from "./selections";
import { createStore } from "./store";
import { createSummaries } from "./summaries";
import type { MemoryOptions, MemoryService } from "./types";
import { createVectors } from "./vectors";

interface Prepared extends PreparedChannel {
  readonly done: Promise<ChannelState | null>;
}

/** Builds the memory of every channel over the ROSEY_LLM_MEMORY bucket. */
export function createMemory(opts: MemoryOptions): MemoryService {
  const { config, clock } = opts;
  const store = createStore(opts);
  const history = createHistory(store, clock);
  const summaries = createSummaries({ ...opts, store, instance: opts.instance ?? randomBytes(6).toString("base64url") });
  const vectors = createVectors(store, opts.embedder, clock);
  const facts = createFacts(store, config, clock, vectors);
  const buildContext = createContextBuilder(config);

  /** The channel, up to date, with its backfill of vectors started. */
  async function channel(encoded: string): Promise<ChannelState> {
    const st = await store.channel(encoded);
    vectors.backfill(encoded, st);
    return st;
  }

  /** The channel as `prepared` read it, or read now when it was not prepared or its read failed. */
  async function current(channel: string, prepared?: PreparedChannel): Promise<ChannelState> {
    const ahead = prepared?.channel === channel ? await (prepared as Prepared).done : null;
    return ahead ?? (await store.channel(encodeName(channel)));
  }

  /** Facts of the channel for the query, by words and, when the query can be embedded, by meaning. */
  async function find(encoded: string, st: ChannelState, query: string, userId: string | null, limit: number): Promise<Memory[]> {
    const vector = limit > 0 ? await vectors.query(st, query) : undefined;
    return facts.find(encoded, st, query, userId, limit, vector);
  }

  return {
    prepare(channel, proof): Prepared {
      const read = () => store.channel(encodeName(channel), proof?.since);
      // A refused admission needs no context: nothing is read.
      return { channel, done: (proof ? proof.after.then(read, () => null) : read()).catch(() => null) };
    },

    quiet: (channel) => store.quiet(encodeName(channel)),

    channelLimits: (limits, ttlSeconds) => channelLimits(store, limits, ttlSeconds, opts.log),

    async context(channel, user, message, persona, prepared) {
      const encoded = encodeName(channel);
      const st = await current(channel, prepared);
      vectors.backfill(encoded, st);
      return buildContext(st, await find(encoded, st, message, user, config.memory.memories_in_context), user, message, persona);
    },

    async record(channel, user, message, reply) {
      const encoded = encodeName(channel);
      await history.record(encoded, user, message, reply);
      summaries.maybeSummarize(encoded);
    },

    async add(m) {
      const encoded = encodeName(m.channel);
      return facts.add(encoded, await channel(encoded), m);
    },

    async recall(q) {
      const encoded = encodeName(q.channel);
      return find(encoded, await channel(encoded), q.query, q.user_id ?? null, q.limit);
    },

    async forget(q) {
      const encoded = encodeName(q.channel);
      return facts.forget(encoded, await store.channel(encoded), q);
    },

    async reset(channel) {
      const encoded = encodeName(channel);
      const st = await store.channel(encoded);
      // What the channel holds now, as just read from the bucket: deleted keys are not listed.
      const keys = [
        ...[...st.turns.keys()].map((id) => key("t", encoded, id)),
        ...[...st.summaries.keys()].map((id) => key("s", encoded, id)),
        ...[...st.claims].map((id) => key("c", encoded, id)),
        ...[...st.unreadable].filter((k) => /^[tsc]\./.test(k)),
      ];
      await Promise.all(keys.map((k) => store.remove(k)));
    },

    selections: createSelections(store, { config, clock, channel: current }),
    settled: () => store.settled(),
    cached: () => store.cached(),
    close: () => store.close(),
  };
}
