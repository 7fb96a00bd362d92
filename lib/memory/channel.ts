// One channel's memory as this instance holds it while the channel is in use: history,
// summaries, summarization claims and the recall index, built from the channel's keys of the
// ROSEY_LLM_MEMORY bucket, with an estimate of the bytes it takes. lib/kv/group-cache.ts
// loads and refreshes it; this file says how each stored value changes it.
//
// Keys (channel = encodeName(channel); all keys of a channel match `*.<channel>.*`):
//   t.<channel>.<id>          one exchange of the history: the user's message and the reply
//                             in one value (one write per chat); ids sort by time, so racing
//                             writers never overwrite each other and every exchange survives.
//                             Keys written before exchanges were stored whole hold one turn
//                             each (ids ending -0 question, -1 answer) and are read alike.
//   s.<channel>.<first id>    a summary of the history keys first..last, which are then deleted
//   c.<channel>.<first id>    create-once claim: the one instance that summarizes that stretch
//   m.<channel>.<memory id>   a long-term memory; the id hashes scope + folded content, so
//                             two instances adding the same fact meet on one key (CAS merge);
//                             with its embedding when embeddings are on (vectors.ts), kept
//                             in `vectors` here and never in the Memory recall returns
//   l.<channel>.doc           the channel's rate-limit document (lib/limiter's `c.<channel>`,
//                             limits-doc.ts): kept here as stored, so that writing it can prove
//                             the channel current (lib/kv/group-cache.ts)
//   p.<channel>.sel           the channel's persona selection (selections.ts)
// Keys of any other kind are left to whoever writes them: ignored here, never unreadable.
import { Memory, type Message } from "../schemas";
import type { KvEntry } from "../kv";
import { decodeName } from "../keys";
import { MemoryIndex, type Doc } from "./bm25";
import type { StoredExchange, StoredMemory, StoredSelection, StoredSummary, StoredTurn } from "./types";
import { decodeEmbedding, type MemoryVector } from "./embedding";

/** The filter of a channel's keys. */
export const channelFilter = (encoded: string) => `*.${encoded}.*`;

/** One message of the history, as stored. */
export interface HistoryMessage {
  role: "user" | "assistant";
  /** Who spoke, for user messages. */
  user?: string;
  content: string;
  /**
   * Its cost in context() (framing + estimated tokens of the rendered message), worked out
   * the first time a context needs it: history is re-read on every chat of the channel.
   */
  cost?: number;
  /**
   * The message as context() renders it, built once and frozen: every later context of the
   * channel hands out this same object, so the provider's prompt estimate can reuse its count
   * (see providers/offline.ts) instead of scanning the whole history again on every chat.
   */
  msg?: Message;
}

/** A summary as stored. */
export interface SummaryEntry {
  value: StoredSummary;
}

export interface ChannelState {
  name: string;
  /** History keys by id, each holding an exchange (two messages) or, from older data, one turn. */
  turns: Map<string, HistoryMessage[]>;
  /**
   * The ids of `turns` in order, or null to sort again when next asked. Every chat reads
   * the history in order and adds one exchange, whose id is normally the newest: it is
   * appended, so the channel is not sorted again on every chat.
   */
  order: string[] | null;
  /** Messages in `turns`, the unit of the history bounds. */
  messages: number;
  summaries: Map<string, SummaryEntry>;
  /** Ids of the stretches claimed for summarization. */
  claims: Set<string>;
  memories: MemoryIndex;
  /** The embeddings of memories stored with one, by memory id. */
  vectors: Map<string, MemoryVector>;
  /** The channel's persona selection and its revision, or null for none. */
  selection: { value: StoredSelection; revision: number } | null;
  /** Keys of the channel whose stored value could not be read (skipped, but still there). */
  unreadable: Set<string>;
  /** The channel's rate-limit document as stored (key `l.<channel>.doc`). */
  limits?: KvEntry;
  /** Bytes the state takes, kept up to date by applyToChannel (an estimate, see below). */
  bytes: number;
  /** When decayed memories were last swept (see facts.ts). */
  sweptAt: number;
}

// What the heap holds per item besides its text: object headers, Map entries, the rendered
// context message made on first use, and for a memory its term-frequency map and postings.
// Measured with 1,000 channels of 10 memories and 20 exchanges loaded, their context rendered
// once: the estimate came within 5 % of the heap they took (32 KiB a channel; a term shared by
// several memories costs less).
const EXCHANGE_BYTES = 340;
const SUMMARY_BYTES = 260;
const MEMORY_BYTES = 700;
const TERM_BYTES = 110;
const CLAIM_BYTES = 90;
/** The rate-limit document's entry and array headers besides its bytes. */
const LIMITS_BYTES = 200;
/** A vector's Map entry, object and typed array headers besides its 4 bytes a dimension. */
const VECTOR_BYTES = 240;
const SELECTION_BYTES = 120;

/** V8 keeps a string of Latin-1 characters in one byte a character, any other in two. */
const textBytes = (...s: Array<string | undefined>) => s.reduce((n, x) => n + (x ? (/[^\u0000-\u00ff]/.test(x) ? 2 : 1) * x.length : 0), 0);

const historyBytes = (messages: HistoryMessage[]) =>
  // The text is held twice once rendered for a context: as stored and as the message.
  EXCHANGE_BYTES + messages.reduce((n, m) => n + 2 * textBytes(m.content) + textBytes(m.user), 0);
const summaryBytes = (s: StoredSummary) => SUMMARY_BYTES + 2 * textBytes(s.summary) + textBytes(s.first, s.last);
const docBytes = (d: Doc) =>
  MEMORY_BYTES + textBytes(d.memory.content, d.memory.channel, d.memory.user_id ?? "", d.memory.id) + d.distinct * TERM_BYTES;
const vectorBytes = (v: MemoryVector) => VECTOR_BYTES + v.vector.byteLength + textBytes(v.model);

export function emptyChannel(encoded: string): ChannelState {
  return {
    name: decodeName(encoded),
    turns: new Map(),
    order: [],
    messages: 0,
    summaries: new Map(),
    claims: new Set(),
    memories: new MemoryIndex(),
    vectors: new Map(),
    selection: null,
    unreadable: new Set(),
    bytes: 0,
    sweptAt: 0,
  };
}

const dec = new TextDecoder();

/** The messages of a stored history value: an exchange, or a single turn of older data. */
function historyMessages(v: StoredExchange | StoredTurn): HistoryMessage[] | null {
  if ("reply" in v && typeof v.reply === "string" && typeof v.message === "string") {
    return [
      { role: "user", user: typeof v.user === "string" ? v.user : undefined, content: v.message },
      { role: "assistant", content: v.reply },
    ];
  }
  if ("role" in v && (v.role === "user" || v.role === "assistant") && typeof v.content === "string") {
    return [v.role === "user" ? { role: "user", user: typeof v.user === "string" ? v.user : undefined, content: v.content } : { role: "assistant", content: v.content }];
  }
  return null;
}

function isSummary(v: unknown): v is StoredSummary {
  const s = v as StoredSummary;
  return typeof s === "object" && s !== null && typeof s.summary === "string" && typeof s.first === "string" && typeof s.last === "string";
}

function setTurn(st: ChannelState, id: string, messages: HistoryMessage[] | null): void {
  const cur = st.turns.get(id);
  if (cur) {
    st.messages -= cur.length;
    st.bytes -= historyBytes(cur);
  }
  if (messages) {
    if (!cur && st.order) {
      if (st.order.length === 0 || st.order[st.order.length - 1] < id) st.order.push(id);
      else st.order = null;
    }
    st.turns.set(id, messages);
    st.messages += messages.length;
    st.bytes += historyBytes(messages);
  } else if (cur) {
    // Deletions come in whole stretches (summaries, resets): sort once afterwards.
    st.order = null;
    st.turns.delete(id);
  }
}

function setSummary(st: ChannelState, id: string, value: StoredSummary | null): void {
  const cur = st.summaries.get(id);
  if (cur) st.bytes -= summaryBytes(cur.value);
  if (value) {
    st.summaries.set(id, { value });
    st.bytes += summaryBytes(value);
  } else st.summaries.delete(id);
}

function setMemory(st: ChannelState, id: string, value: Memory | null, revision: number, vector: MemoryVector | null): void {
  const cur = st.memories.get(id);
  if (cur) st.bytes -= docBytes(cur);
  if (value) st.memories.upsert(value, revision);
  else st.memories.remove(id);
  const now = st.memories.get(id);
  if (now) st.bytes += docBytes(now);
  const old = st.vectors.get(id);
  if (old) st.bytes -= vectorBytes(old);
  if (vector && value) {
    st.vectors.set(id, vector);
    st.bytes += vectorBytes(vector);
  } else st.vectors.delete(id);
}

function isSelection(v: unknown): v is StoredSelection {
  const s = v as StoredSelection;
  return typeof s === "object" && s !== null && typeof s.persona === "string" && (s.at === undefined || typeof s.at === "number");
}

function setSelection(st: ChannelState, value: StoredSelection | null, revision: number): void {
  if (st.selection) st.bytes -= SELECTION_BYTES + textBytes(st.selection.value.persona);
  st.selection = value && { value, revision };
  if (value) st.bytes += SELECTION_BYTES + textBytes(value.persona);
}

function setClaim(st: ChannelState, id: string, present: boolean): void {
  if (present === st.claims.has(id)) return;
  if (present) st.claims.add(id);
  else st.claims.delete(id);
  st.bytes += (present ? 1 : -1) * (CLAIM_BYTES + textBytes(id));
}

/** The kinds of key (first token) this file reads; see the header. */
const KINDS = new Set(["t", "s", "c", "m", "p"]);

/**
 * Applies one key's value (null: deleted) to the channel. Throws on a value that is not what
 * its key says (the cache logs it), after noting the key in `unreadable`; keys of other
 * kinds or shapes are ignored, whatever their value.
 */
export function applyToChannel(st: ChannelState, k: string, entry: KvEntry | null): void {
  st.unreadable.delete(k);
  try {
    applyValue(st, k, entry);
  } catch (err) {
    applyValue(st, k, null);
    st.unreadable.add(k);
    throw err;
  }
}

function applyValue(st: ChannelState, k: string, entry: KvEntry | null): void {
  const [kind, , id, extra] = k.split(".");
  if (id === undefined || extra !== undefined) return;
  if (kind === "l") {
    // Read by the limiter, which checks it: held as stored.
    if (st.limits) st.bytes -= LIMITS_BYTES + st.limits.value.byteLength;
    st.limits = entry ? { key: k, value: entry.value, revision: entry.revision } : undefined;
    if (st.limits) st.bytes += LIMITS_BYTES + st.limits.value.byteLength;
    return;
  }
  if (!KINDS.has(kind) || (kind === "p" && id !== "sel")) return;
  let value: unknown = null;
  if (entry) {
    try {
      value = JSON.parse(dec.decode(entry.value));
    } catch {
      throw new Error("not JSON");
    }
  }
  if (kind === "t") {
    const messages = value === null ? null : historyMessages(value as StoredExchange);
    if (value !== null && !messages) throw new Error("not an exchange");
    setTurn(st, id, messages);
  } else if (kind === "s") {
    if (value !== null && !isSummary(value)) throw new Error("not a summary");
    setSummary(st, id, value as StoredSummary | null);
  } else if (kind === "c") {
    setClaim(st, id, value !== null);
  } else if (kind === "m") {
    let memory: Memory | null = null;
    if (value !== null) {
      // Parsing keeps the Memory's own fields: the embedding stays out of what recall returns.
      const parsed = Memory.safeParse(value);
      if (!parsed.success || parsed.data.id !== id) throw new Error("not a memory");
      memory = parsed.data;
    }
    // An unreadable embedding leaves the memory without one, for the backfill to redo.
    setMemory(st, id, memory, entry?.revision ?? 0, decodeEmbedding((value as StoredMemory | null)?.embedding));
  } else {
    if (value !== null && !isSelection(value)) throw new Error("not a persona selection");
    setSelection(st, value, entry?.revision ?? 0);
  }
}

/** History ids in order (ids sort by time; plain string order, as `<` compares). */
export const turnIds = (st: ChannelState): string[] => (st.order ??= [...st.turns.keys()].sort());

/** Summaries oldest first. */
export const sortedSummaries = (st: ChannelState): Array<[string, SummaryEntry]> =>
  [...st.summaries].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
