// Conversation memory: what it needs from the host and what it offers besides ConversationMemory.
import type { Config } from "../config";
import type { Clock, ConversationMemory, Events, Logger, Providers } from "../context/types";
import type { Kv } from "../kv";
import type { Message } from "../schemas";

export interface MemoryOptions {
  /** The ROSEY_LLM_MEMORY bucket; must support `watch`. */
  kv: Kv;
  config: Config;
  clock: Clock;
  events: Events;
  providers: Providers;
  log: Logger;
  /** Names this instance in summarization claims (defaults to a random tag). */
  instance?: string;
  /**
   * Writes a history summary from the prompt messages; the runtime passes a model call that
   * is admitted and counted like any other (lib/llm). Without it the providers are called directly.
   */
  summarizer?: (req: { channel: string; messages: Message[]; signal?: AbortSignal }) => Promise<string>;
}

/** ConversationMemory plus the lifecycle calls the runtime and tests use. */
export interface MemoryService extends ConversationMemory {
  /** Resolves once the local index holds everything the bucket held at start. */
  ready(): Promise<void>;
  /**
   * Waits until the local index has seen every write any instance had acknowledged
   * before the call (one KV put plus the watch delay). Reads do not call it themselves.
   */
  sync(): Promise<void>;
  /** Waits for background work: summarizations, last_accessed touches, decay sweeps. */
  settled(): Promise<void>;
  /** Stops the watch. Background work already started still finishes (see settled). */
  close(): void;
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
