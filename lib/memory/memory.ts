// Conversation history, summaries and long-term memories of every channel, in one KV
// bucket, mirrored into this instance by a watch.
//
// Keys (channel = encodeName(channel)):
//   t.<channel>.<id>          one exchange of the history: the user's message and the reply
//                             in one value (one write per chat); ids sort by time, so racing
//                             writers never overwrite each other and every exchange survives.
//                             Keys written before exchanges were stored whole hold one turn
//                             each (ids ending -0 question, -1 answer) and are read alike.
//   s.<channel>.<first id>    a summary of the history keys first..last, which are then deleted
//   c.<channel>.<first id>    create-once claim: the one instance that summarizes that stretch
//   m.<channel>.<memory id>   a long-term memory; the id hashes scope + folded content, so
//                             two instances adding the same fact meet on one key (CAS merge)
//   sync.<instance>           barrier key for sync()
// Exchanges, summaries and claims expire storage.history_ttl_days after they were written
// (their TTL); memories go with the bucket's max age, decay_days after their last use.
//
// Consistency: writes go to KV first and are applied to the local mirror with the revision
// KV returned, so an instance always reads its own writes. Other instances' writes arrive
// through the watch, in bucket order, typically well under a millisecond later on one
// server. Reads (context, recall) serve from the mirror without a round trip; a caller
// that must see a write made elsewhere a moment ago calls sync() first.
import { createHash, randomBytes } from "node:crypto";
import type { Memory, Message, Persona } from "../schemas";
import type { AddMemory } from "../context/types";
import { WatchProgress, casUpdate, isKvConflict, type KvEntry } from "../kv";
import { decodeName, encodeName, key } from "../keys";
import { extractiveSummary } from "../providers/extractive";
import { estimateTokens } from "../providers/tokens";
import { MemoryIndex, type Doc, type Ranked } from "./bm25";
import { canonical, terms } from "./text";
import { storedContextMessage } from "./framing";
import type { MemoryOptions, MemoryService, StoredClaim, StoredExchange, StoredSummary, StoredTurn } from "./types";

/** Summaries kept per channel; older ones are deleted (context only shows the last few). */
export const MAX_SUMMARIES = 20;
/** A claim older than this whose stretch is still there was abandoned (crashed instance). */
export const CLAIM_TTL_MS = 120_000;
/** Recall rewrites last_accessed at most this often per memory, to spare the bucket. */
export const TOUCH_EVERY_MS = 60_000;
/** Decayed memories of a channel are swept at most this often. */
export const SWEEP_EVERY_MS = 60_000;
/** Longest wait of sync() before it gives up with a warning. */
const SYNC_TIMEOUT_MS = 5_000;
/** Per-turn and whole-transcript bounds on what is sent to be summarized. */
const SUMMARY_TURN_CHARS = 1_000;
const SUMMARY_INPUT_CHARS = 24_000;
const DAY_MS = 86_400_000;

export const SUMMARY_PROMPT =
  "You summarize group chat conversations. Summarize the conversation below in under 200 words: " +
  "who said what that matters, facts, decisions and open questions. Plain prose, no preamble.";

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (v: unknown) => enc.encode(JSON.stringify(v));

interface Versioned<T> {
  value: T;
  revision: number;
}

/** A summary as stored. */
type StoredSummaryEntry = Versioned<StoredSummary>;

/** One message of the history, as stored. */
interface HistoryMessage {
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

/** One history key: an exchange (question and reply) or, from older data, a single turn. */
interface HistoryEntry {
  messages: HistoryMessage[];
  revision: number;
}

interface ChannelState {
  name: string;
  /** History keys by id; `messages` counts the messages they hold, the unit of the bounds. */
  turns: Map<string, HistoryEntry>;
  /**
   * The ids of `turns` in order, or null to sort again when next asked. Every chat reads
   * the history in order and adds one exchange, whose id is normally the newest: it is
   * appended, so the channel is not sorted again on every chat.
   */
  order: string[] | null;
  messages: number;
  summaries: Map<string, StoredSummaryEntry>;
  claims: Map<string, number>;
  memories: MemoryIndex;
  sweptAt: number;
  summarizing: boolean;
}

/** Builds the memory of every channel over the ROSEY_LLM_MEMORY bucket. */
export function createMemory(opts: MemoryOptions): MemoryService {
  const { kv, config, clock, events, providers, log } = opts;
  const mc = config.memory;
  const historyTtl = { ttlSeconds: config.storage.history_ttl_days * 86_400 };
  const instance = opts.instance ?? randomBytes(6).toString("base64url");
  const tag = randomBytes(4).toString("base64url");
  const syncKey = key("sync", encodeName(instance));
  const channels = new Map<string, ChannelState>();
  /** Revisions of keys this instance deleted: an older put still in the watch must not revive them. */
  const tombstones = new Map<string, number>();
  const pending = new Set<Promise<unknown>>();
  const progress = new WatchProgress();
  let stopWatch: (() => void) | undefined;
  let closed = false;
  let seq = 0;

  const now = () => clock.now();
  const iso = (ms: number) => new Date(ms).toISOString();

  /**
   * Id of one exchange: it sorts by time, then this instance's sequence and tag. Older
   * per-turn keys used the same id with -0 (question) and -1 (answer) appended, so old and
   * new keys of one channel sort together by time.
   */
  const exchangeId = (): string =>
    `${Math.max(0, Math.floor(now())).toString(36).padStart(9, "0")}-${(seq++ % 36 ** 5).toString(36).padStart(5, "0")}-${tag}`;

  function state(encoded: string): ChannelState {
    let st = channels.get(encoded);
    if (!st) {
      st = {
        name: decodeName(encoded),
        turns: new Map(),
        order: [],
        messages: 0,
        summaries: new Map(),
        claims: new Map(),
        memories: new MemoryIndex(),
        sweptAt: 0,
        summarizing: false,
      };
      channels.set(encoded, st);
    }
    return st;
  }

  /** Runs work in the background, tracked by settled(), never as an unhandled rejection. */
  function background(what: string, p: Promise<unknown>): void {
    const q = p.catch((err) => log.warn(`memory: ${what} failed`, { error: (err as Error).message }));
    pending.add(q);
    void q.finally(() => pending.delete(q));
  }

  // ------------------------------------------------------------ the mirror

  /** The messages of a stored history value: an exchange, or a single turn of older data. */
  function historyMessages(v: StoredExchange | StoredTurn): HistoryMessage[] | null {
    if ("reply" in v && typeof v.reply === "string" && typeof v.message === "string") {
      return [
        { role: "user", user: v.user, content: v.message },
        { role: "assistant", content: v.reply },
      ];
    }
    if ("role" in v && (v.role === "user" || v.role === "assistant") && typeof v.content === "string") {
      return [v.role === "user" ? { role: "user", user: v.user, content: v.content } : { role: "assistant", content: v.content }];
    }
    return null;
  }

  function setTurn(st: ChannelState, id: string, e: HistoryEntry | null): void {
    const cur = st.turns.get(id);
    if (cur) st.messages -= cur.messages.length;
    if (e) {
      if (!cur && st.order) {
        if (st.order.length === 0 || st.order[st.order.length - 1] < id) st.order.push(id);
        else st.order = null;
      }
      st.turns.set(id, e);
      st.messages += e.messages.length;
    } else {
      // Deletions come in whole stretches (summaries, resets): sort once afterwards.
      if (cur) st.order = null;
      st.turns.delete(id);
    }
  }

  /** Applies one bucket entry (null = deleted) to the mirror; older revisions are ignored. */
  function apply(k: string, entry: KvEntry | null): void {
    const parts = k.split(".");
    if (parts.length !== 3 || !["t", "s", "c", "m"].includes(parts[0])) return;
    const [kind, encoded, id] = parts;
    if (entry === null) {
      tombstones.delete(k);
      const st = channels.get(encoded);
      if (!st) return;
      if (kind === "t") setTurn(st, id, null);
      else if (kind === "s") st.summaries.delete(id);
      else if (kind === "c") st.claims.delete(id);
      else st.memories.remove(id);
      return;
    }
    const dead = tombstones.get(k);
    if (dead !== undefined && entry.revision <= dead) return;
    // This instance's own writes come back through the watch after they were applied: a
    // revision the mirror already holds is not decoded and parsed a second time.
    if (kind !== "m") {
      const known = channels.get(encoded);
      const cur = kind === "t" ? known?.turns.get(id) : kind === "s" ? known?.summaries.get(id) : known?.claims.get(id);
      const rev = typeof cur === "number" ? cur : cur?.revision;
      if (rev !== undefined && entry.revision <= rev) return;
    }
    let value: unknown;
    try {
      value = JSON.parse(dec.decode(entry.value));
    } catch {
      log.warn("memory: unreadable entry skipped", { key: k });
      return;
    }
    const st = state(encoded);
    const newer = (m: Map<string, { revision: number } | number>) => {
      const cur = m.get(id);
      const rev = typeof cur === "number" ? cur : cur?.revision;
      return rev === undefined || entry.revision > rev;
    };
    if (kind === "t") {
      const messages = historyMessages(value as StoredExchange | StoredTurn);
      if (!messages) log.warn("memory: unreadable history entry skipped", { key: k });
      else if (newer(st.turns)) setTurn(st, id, { messages, revision: entry.revision });
    } else if (kind === "s") {
      if (newer(st.summaries)) st.summaries.set(id, { value: value as StoredSummary, revision: entry.revision });
    } else if (kind === "c") {
      if (newer(st.claims)) st.claims.set(id, entry.revision);
    } else {
      st.memories.upsert(value as Memory, entry.revision);
    }
  }

  function onWatch(k: string, entry: KvEntry | null): void {
    apply(k, entry);
    if (entry) progress.advance(entry.revision);
  }

  async function sync(): Promise<void> {
    const revision = await kv.put(syncKey, bytes({ at: now() }));
    if (!(await progress.waitFor(revision, SYNC_TIMEOUT_MS))) {
      log.warn("memory: watch did not catch up in time", { revision, seen: progress.seen });
    }
  }

  async function start(): Promise<void> {
    if (!kv.watch) throw new Error(`memory needs a KV bucket with watch (${kv.bucket})`);
    const stop = await kv.watch(">", onWatch);
    if (closed) return stop();
    stopWatch = stop;
    // The watch replays the bucket in order; once our own barrier write comes back through
    // it, everything stored before start has been loaded.
    await sync();
  }

  const started = start();
  started.catch((err) => log.error("memory: watch failed to start", { error: (err as Error).message }));

  // ------------------------------------------------------------ writes

  /** Creates a history key (exchange, claim), with the history TTL. */
  async function create(k: string, value: unknown): Promise<void> {
    const e = bytes(value);
    const revision = await kv.create(k, e, historyTtl);
    apply(k, { key: k, value: e, revision });
  }

  /** Writes a history key (summary), with the history TTL. */
  async function put(k: string, value: unknown): Promise<void> {
    const e = bytes(value);
    const revision = await kv.put(k, e, historyTtl);
    apply(k, { key: k, value: e, revision });
  }

  /** Deletes a key, first from the mirror so no read after this call sees it. */
  async function remove(k: string, knownRevision?: number): Promise<void> {
    apply(k, null);
    if (knownRevision !== undefined) tombstones.set(k, knownRevision);
    await kv.delete(k);
  }

  // ------------------------------------------------------------ history and summaries

  /** History ids in order (ids sort by time; plain string order, as `<` compares). */
  const turnIds = (st: ChannelState): string[] => (st.order ??= [...st.turns.keys()].sort());
  const sortedTurns = (st: ChannelState): Array<[string, HistoryEntry]> => turnIds(st).map((id) => [id, st.turns.get(id)!]);
  const sortedSummaries = (st: ChannelState) =>
    [...st.summaries].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

  /** Takes the create-once claim on a stretch, or an abandoned one; false when another instance has it. */
  async function claim(encoded: string, first: string): Promise<boolean> {
    const k = key("c", encoded, first);
    const mine: StoredClaim = { instance, at: now() };
    try {
      await create(k, mine);
      return true;
    } catch (err) {
      if (!isKvConflict(err)) throw err;
    }
    const cur = await kv.get(k);
    if (!cur) return false; // released: the stretch is done
    const theirs = JSON.parse(dec.decode(cur.value)) as StoredClaim;
    if (now() - theirs.at < CLAIM_TTL_MS) return false;
    try {
      const e = bytes(mine);
      apply(k, { key: k, value: e, revision: await kv.update(k, e, cur.revision, historyTtl) });
      log.warn("memory: took over an abandoned summarization", { channel: state(encoded).name, from: theirs.instance });
      return true;
    } catch (err) {
      if (isKvConflict(err)) return false;
      throw err;
    }
  }

  /** A summary without the provider: who took part and the most central of what they said (extractive). */
  function fallbackSummary(turns: HistoryMessage[]): string {
    const people = [...new Set(turns.map((t) => t.user).filter((u): u is string => !!u))];
    const said = extractiveSummary(
      turns.filter((t) => t.role === "user").map((t) => `${t.user ?? "user"}: ${t.content}`).join("\n"),
      { maxWords: 150, style: "concise" },
    );
    return `Earlier conversation of ${turns.length} messages between ${people.join(", ") || "users"} and the assistant. They said: ${said}`;
  }

  async function summaryText(st: ChannelState, turns: HistoryMessage[]): Promise<string> {
    let transcript = turns
      .map((t) => `${t.role === "user" ? t.user ?? "user" : "assistant"}: ${t.content.slice(0, SUMMARY_TURN_CHARS)}`)
      .join("\n");
    if (transcript.length > SUMMARY_INPUT_CHARS) transcript = transcript.slice(-SUMMARY_INPUT_CHARS);
    try {
      const c = await providers.complete(
        [
          { role: "system", content: SUMMARY_PROMPT },
          { role: "user", content: transcript },
        ],
        { temperature: 0.3, max_tokens: 400 },
      );
      const text = c.content.trim();
      if (text) return text;
    } catch (err) {
      log.warn("memory: provider failed to summarize, storing a plain summary", {
        channel: st.name,
        error: (err as Error).message,
      });
    }
    return fallbackSummary(turns);
  }

  /** Summarizes the oldest stretch of a channel's history when it has grown past the threshold. */
  async function summarize(encoded: string): Promise<void> {
    const st = state(encoded);
    const turns = sortedTurns(st);
    const total = st.messages;
    if (total <= mc.summarize_after) return;
    const keep = Math.min(mc.history_messages, Math.floor(mc.summarize_after / 2));
    // The oldest keys holding all but the newest `keep` messages. An exchange is one key, so
    // a question stays with its answer; with older per-turn keys an answer right after the
    // cut joins the stretch for the same reason.
    let end = 0;
    let count = 0;
    while (end < turns.length && count < total - keep) count += turns[end++][1].messages.length;
    if (end < turns.length && turns[end][1].messages[0].role === "assistant") count += turns[end++][1].messages.length;
    const stretch = turns.slice(0, end);
    if (stretch.length === 0) return;
    const first = stretch[0][0];
    const last = stretch[stretch.length - 1][0];
    if (!(await claim(encoded, first))) return;

    const text = await summaryText(
      st,
      stretch.flatMap(([, t]) => t.messages),
    );
    const summary: StoredSummary = { summary: text, message_count: count, first, last, at: now() };
    await put(key("s", encoded, first), summary);
    await Promise.all(stretch.map(([id, t]) => remove(key("t", encoded, id), t.revision)));

    // Older claims can go now: an instance that still saw their stretch has seen it deleted
    // by the time it sees this one. Keep the newest claim until the next summary.
    const cleanup: Promise<void>[] = [];
    for (const [id, rev] of st.claims) if (id !== first) cleanup.push(remove(key("c", encoded, id), rev));
    const summaries = sortedSummaries(st);
    for (const [id, s] of summaries.slice(0, Math.max(0, summaries.length - MAX_SUMMARIES))) {
      cleanup.push(remove(key("s", encoded, id), s.revision));
    }
    await Promise.all(cleanup);

    const eventId = "summarized-" + createHash("sha256").update(`${encoded}.${first}`).digest("base64url").slice(0, 22);
    events.emit("summarized", { channel: st.name, message_count: count, summary_length: text.length }, { id: eventId });
  }

  function maybeSummarize(encoded: string): void {
    const st = state(encoded);
    if (st.summarizing || st.messages <= mc.summarize_after) return;
    st.summarizing = true;
    background(
      "summarization",
      summarize(encoded).finally(() => {
        st.summarizing = false;
      }),
    );
  }

  // ------------------------------------------------------------ long-term memories

  const decayMs = mc.decay_days * DAY_MS;
  const visibleTo = (userId: string | null, at: number) => (d: Doc) =>
    (d.memory.user_id === null || d.memory.user_id === userId) && at - d.accessed <= decayMs;

  /** Drops memories not used for decay_days (at most once a minute per channel). */
  function sweep(encoded: string, at: number): void {
    const st = state(encoded);
    if (at - st.sweptAt < SWEEP_EVERY_MS) return;
    st.sweptAt = at;
    const dead = [...st.memories.values()].filter((d) => at - d.accessed > decayMs);
    if (dead.length === 0) return;
    background(
      "decay sweep",
      Promise.all(dead.map((d) => remove(key("m", encoded, d.memory.id), d.revision))),
    );
  }

  /** Records that memories were used, in the mirror now and in KV in the background. */
  function touch(encoded: string, found: Ranked[], at: number): Memory[] {
    const st = state(encoded);
    const out: Memory[] = [];
    for (const { doc } of found) {
      if (at - doc.accessed >= TOUCH_EVERY_MS) {
        const id = doc.memory.id;
        st.memories.touch(id, at);
        const k = key("m", encoded, id);
        background(
          "touch",
          casUpdate<Memory, void>(kv, k, (cur) => ({
            value: cur && Date.parse(cur.last_accessed) < at ? { ...cur, last_accessed: iso(at) } : undefined,
            result: undefined,
          })).then((r) => {
            if (r.value && r.revision) apply(k, { key: k, value: bytes(r.value), revision: r.revision });
          }),
        );
      }
      out.push(doc.memory);
    }
    return out;
  }

  function findMemories(encoded: string, query: string, userId: string | null, limit: number): Memory[] {
    const st = channels.get(encoded);
    if (!st || st.memories.size === 0 || limit <= 0) return [];
    const at = now();
    const visible = visibleTo(userId, at);
    const q = terms(query);
    // A query with no searchable word (all stop words) asks for what matters most.
    const found = q.length > 0 ? st.memories.search(q, visible, limit) : st.memories.top(visible, limit);
    sweep(encoded, at);
    return touch(encoded, found, at);
  }

  /** Content-addressed id: the same fact in the same scope always lands on one key. */
  const memoryId = (userId: string | null, content: string) =>
    createHash("sha256")
      .update(`${userId ?? ""}\n${canonical(content) || content.trim()}`)
      .digest("base64url")
      .slice(0, 22);

  /** Evicts the least important, least recently used memories above the channel cap. */
  async function enforceCap(encoded: string, keepId: string): Promise<void> {
    const st = state(encoded);
    const over = st.memories.size - mc.max_memories_per_channel;
    if (over <= 0) return;
    const victims = [...st.memories.values()]
      .filter((d) => d.memory.id !== keepId)
      .sort(
        (a, b) =>
          a.memory.importance - b.memory.importance || a.accessed - b.accessed || a.created - b.created,
      )
      .slice(0, over);
    await Promise.all(victims.map((d) => remove(key("m", encoded, d.memory.id), d.revision)));
  }

  // ------------------------------------------------------------ context

  /** ~4 tokens of framing per message, as the provider's estimate counts them. */
  const cost = (m: Message) => 4 + estimateTokens(m.content);

  // Persona prompts are the same few strings on every chat: their message is made once and
  // shared, so the provider's estimate of it is cached with it. Bounded, since personas
  // defined at run time are not; cleared when full.
  const systemMessages = new Map<string, Message>();
  const systemMessage = (content: string): Message => {
    let msg = systemMessages.get(content);
    if (!msg) {
      if (systemMessages.size >= 256) systemMessages.clear();
      systemMessages.set(content, (msg = Object.freeze({ role: "system", content } as Message)));
    }
    return msg;
  };

  // ------------------------------------------------------------ the interface

  return {
    ready: () => started,
    sync: async () => {
      await started;
      await sync();
    },
    async settled() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
    close() {
      closed = true;
      stopWatch?.();
      stopWatch = undefined;
      progress.releaseAll();
      background("sync key cleanup", kv.delete(syncKey));
    },

    async context(channel: string, user: string, message: string, persona: Persona): Promise<Message[]> {
      await started;
      const encoded = encodeName(channel);
      const st = channels.get(encoded);
      const prompt = systemMessage(persona.system_prompt);
      const head: Message[] = [prompt];
      let headCost = cost(prompt);
      // Summaries and facts are stored text that users wrote: quoted data, never instructions.
      const summaries = st && mc.summaries_in_context > 0 ? sortedSummaries(st).slice(-mc.summaries_in_context).map(([, s]) => s.value.summary) : [];
      const facts = findMemories(encoded, message, user, mc.memories_in_context).map((m) => ({ about: m.user_id, text: m.content }));
      const stored = storedContextMessage(summaries, facts);
      if (stored) {
        head.push(stored);
        headCost += cost(stored);
      }
      const next: Message = { role: "user", content: `${user}: ${message}` };

      let budget = mc.context_tokens - 3 - headCost - cost(next);
      // Newest first, at most history_messages, stopping at the first message that does not
      // fit so the history stays contiguous.
      const history: Message[] = [];
      if (st) {
        const ids = turnIds(st);
        let left = mc.history_messages;
        newest: for (let i = ids.length - 1; i >= 0 && left > 0; i--) {
          const msgs = st.turns.get(ids[i])!.messages;
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
            history.push(t.msg);
          }
        }
        history.reverse();
      }
      return [...head, ...history, next];
    },

    async record(channel: string, user: string, message: string, reply: string): Promise<void> {
      await started;
      const encoded = encodeName(channel);
      const at = now();
      // Question and reply in one key: one write, and no reader ever sees one without the other.
      const exchange: StoredExchange = { user, message, reply, at };
      await create(key("t", encoded, exchangeId()), exchange);
      maybeSummarize(encoded);
    },

    async add(m: AddMemory): Promise<Memory> {
      await started;
      const encoded = encodeName(m.channel);
      const st = state(encoded);
      const userId = m.user_id ?? null;
      const at = now();
      const near = st.memories.nearDuplicate(m.content, userId);
      const id = near?.memory.id ?? memoryId(userId, m.content);
      const k = key("m", encoded, id);
      const fresh: Memory = {
        id,
        channel: m.channel,
        user_id: userId,
        category: m.category,
        content: m.content,
        importance: m.importance,
        created_at: iso(at),
        last_accessed: iso(at),
      };
      // CAS: the same fact may be added on another instance right now; both meet on this key.
      const r = await casUpdate<Memory, void>(kv, k, (cur) => ({
        value: cur
          ? { ...cur, importance: Math.max(cur.importance, m.importance), last_accessed: iso(Math.max(at, Date.parse(cur.last_accessed))) }
          : fresh,
        result: undefined,
      }));
      const stored = r.value!;
      apply(k, { key: k, value: bytes(stored), revision: r.revision });
      await enforceCap(encoded, id);
      sweep(encoded, at);
      return stored;
    },

    async recall(q): Promise<Memory[]> {
      await started;
      return findMemories(encodeName(q.channel), q.query, q.user_id ?? null, q.limit);
    },

    async forget(q): Promise<number> {
      await started;
      const encoded = encodeName(q.channel);
      const st = state(encoded);
      let victims: Array<{ id: string; revision?: number }>;
      if (q.id !== undefined) {
        if (!/^[A-Za-z0-9_-]+$/.test(q.id)) return 0;
        const k = key("m", encoded, q.id);
        // Read through: the memory may have been added elsewhere a moment ago.
        const d = st.memories.get(q.id);
        const e = d ? { memory: d.memory, revision: d.revision } : await kv.get(k).then((x) => x && { memory: JSON.parse(dec.decode(x.value)) as Memory, revision: x.revision });
        if (!e) return 0;
        if (q.user_id !== undefined && e.memory.user_id !== q.user_id) return 0;
        victims = [{ id: q.id, revision: e.revision }];
      } else {
        victims = [...st.memories.values()]
          .filter((d) => d.memory.user_id === q.user_id)
          .map((d) => ({ id: d.memory.id, revision: d.revision }));
      }
      await Promise.all(victims.map((v) => remove(key("m", encoded, v.id), v.revision)));
      return victims.length;
    },

    async reset(channel: string): Promise<void> {
      await started;
      const encoded = encodeName(channel);
      const st = state(encoded);
      // The bucket is the authority: list it too, in case the watch has not delivered a turn yet.
      const listed = await Promise.all(["t", "s", "c"].map((kind) => kv.keys(`${kind}.${encoded}.*`)));
      const known = new Map<string, number | undefined>();
      for (const k of listed.flat()) known.set(k, undefined);
      for (const [id, t] of st.turns) known.set(key("t", encoded, id), t.revision);
      for (const [id, s] of st.summaries) known.set(key("s", encoded, id), s.revision);
      for (const [id, rev] of st.claims) known.set(key("c", encoded, id), rev);
      await Promise.all([...known].map(([k, rev]) => remove(k, rev)));
    },
  };
}
