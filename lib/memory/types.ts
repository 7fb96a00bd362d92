// Conversation memory: what it needs from the host and what it offers besides ConversationMemory.
import type { Config } from "../config";
import type { Clock, ConversationMemory, Events, Logger, PreparedChannel, Providers } from "../context/types";
import type { Kv } from "../kv";
import type { Embedder } from "../providers/embeddings";
import type { Memory, Message } from "../schemas";

/** Writes a summary of a stretch of history (the summarization prompt and the transcript). */
export type Summarizer = (req: { channel: string; messages: Message[]; signal?: AbortSignal }) => Promise<string>;

export interface MemoryOptions {
  /** The ROSEY_LLM_MEMORY bucket; must support `snapshot` and `changes`. */
  kv: Kv;
  config: Config;
  clock: Clock;
  events: Events;
  providers: Providers;
  log: Logger;
  /** Names this instance in summarization claims (defaults to a random tag). */
  instance?: string;
  /**
   * Writes history summaries instead of `providers.complete` (e.g. through the limiter's
   * accounting). When it throws, a plain summary is stored, as when the provider fails.
   */
  summarizer?: Summarizer;
  /** Embeds memories and queries, for recall by meaning beside words; none: recall by words only. */
  embedder?: Embedder;
}

/** ConversationMemory plus the lifecycle calls the runtime and tests use. */
export interface MemoryService extends ConversationMemory {
  /** Waits for background work: summarizations, last_accessed touches, decay sweeps, embedding backfills. */
  settled(): Promise<void>;
  /** Each channel's persona selection, kept with the channel (for lib/personas). */
  selections: ChannelSelections;
  /** Channels held in RAM and the bytes they take (estimated). */
  cached(): { channels: number; bytes: number };
  /** Forgets every cached channel. Background work already started still finishes (see settled). */
  close(): void;
  /**
   * The limiter's bucket with each channel's rate-limit document kept among the channel's
   * memory keys (limits-doc.ts), written with `ttlSeconds`.
   */
  channelLimits(limits: Kv, ttlSeconds: number): Kv;
}

/**
 * One exchange of the history (key `t.<channel>.<id>`): the user's message and the reply,
 * written together in one value.
 */
export interface StoredExchange {
  /** Who asked. */
  user: string;
  message: string;
  reply: string;
  /** ms since the epoch. */
  at: number;
}

/**
 * One conversation turn (key `t.<channel>.<id>-0` or `-1`), as history was stored before
 * exchanges were kept whole; still read from buckets that hold it.
 */
export interface StoredTurn {
  role: "user" | "assistant";
  /** Who spoke, for user turns. */
  user?: string;
  content: string;
  /** ms since the epoch. */
  at: number;
}

/** One stored summary (key `s.<channel>.<first id>`) of the history keys first..last. */
export interface StoredSummary {
  summary: string;
  /** Messages summarized (an exchange counts two). */
  message_count: number;
  first: string;
  last: string;
  at: number;
}

/** A summarization claim (key `c.<channel>.<first id>`): who summarizes that stretch. */
export interface StoredClaim {
  instance: string;
  at: number;
}

/**
 * A long-term memory as stored (key `m.<channel>.<id>`): the Memory, and its embedding once
 * it has one.
 */
export interface StoredMemory extends Memory {
  embedding?: StoredEmbedding;
}

/** A channel's persona selection as stored (key `p.<channel>.sel`). */
export interface StoredSelection {
  /** The persona's name. */
  persona: string;
  /**
   * When it was selected or last kept (ms since the epoch); none on a selection moved before
   * this was stored. Like the history, a selection expires ROSEY_HISTORY_TTL_DAYS after that.
   */
  at?: number;
}

/**
 * Each channel's persona selection, stored with the channel's keys, so that the read of a
 * channel for a chat brings its selection too. lib/personas reads and writes it through this.
 */
export interface ChannelSelections {
  /**
   * The channel's selection (null: none): from the read `prepared` made, when given and it
   * succeeded, without a round trip of its own; else read now with the rest of the channel.
   */
  read(channel: string, prepared?: PreparedChannel): Promise<StoredSelection | null>;
  /** The selection as this instance last read the channel, without a round trip; undefined when it does not hold the channel. */
  held(channel: string): StoredSelection | null | undefined;
  /** Stores the channel's selection. */
  write(channel: string, persona: string): Promise<void>;
  /** Stores the selection unless the channel has one already (create-once); false when it had. */
  adopt(channel: string, persona: string): Promise<boolean>;
}

/** A memory's embedding: the model, and the unit vector as base64 of float32 little-endian values. */
export interface StoredEmbedding {
  model: string;
  vector: string;
}
