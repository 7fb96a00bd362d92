// Summaries of a channel's history: once the history holds more than summarize_after
// messages, the oldest stretch (down to half the threshold) is summarized by one instance,
// stored as a summary key, and deleted.
//
// Which instance: the one whose create-once claim on the stretch's first key succeeds. A
// claim older than CLAIM_TTL_MS whose stretch is still there was abandoned (its instance
// died) and is taken over by the next instance that summarizes the channel. After claiming,
// the instance reads the channel again: a stretch another instance finished meanwhile is
// gone, and is not summarized twice. The claim is deleted with the stretch.
import { createHash } from "node:crypto";
import type { Events, Logger, Providers } from "../context/types";
import type { Config } from "../config";
import { isKvConflict } from "../kv";
import { key } from "../keys";
import { extractiveSummary } from "../providers/extractive";
import type { Message } from "../schemas";
import { sortedSummaries, turnIds, type HistoryMessage } from "./channel";
import type { Store } from "./store";
import type { StoredClaim, StoredSummary, Summarizer } from "./types";

/** Summaries kept per channel; older ones are deleted (context only shows the last few). */
export const MAX_SUMMARIES = 20;
/** A claim older than this whose stretch is still there was abandoned (crashed instance). */
export const CLAIM_TTL_MS = 60_000;
/** Per-turn and whole-transcript bounds on what is sent to be summarized. */
const SUMMARY_TURN_CHARS = 1_000;
const SUMMARY_INPUT_CHARS = 24_000;

export const SUMMARY_PROMPT =
  "You summarize group chat conversations. Summarize the conversation below in under 200 words: " +
  "who said what that matters, facts, decisions and open questions. Plain prose, no preamble.";

const dec = new TextDecoder();

/** A summary without the provider: who took part and the most central of what they said (extractive). */
export function fallbackSummary(turns: HistoryMessage[]): string {
  const people = [...new Set(turns.map((t) => t.user).filter((u): u is string => !!u))];
  const said = extractiveSummary(
    turns.filter((t) => t.role === "user").map((t) => `${t.user ?? "user"}: ${t.content}`).join("\n"),
    { maxWords: 150, style: "concise" },
  );
  return `Earlier conversation of ${turns.length} messages between ${people.join(", ") || "users"} and the assistant. They said: ${said}`;
}

export interface SummariesOptions {
  store: Store;
  config: Config;
  clock: { now(): number };
  events: Events;
  providers: Providers;
  log: Logger;
  instance: string;
  summarizer?: Summarizer;
}

export interface Summaries {
  /** Starts summarizing the channel in the background when its history is over the threshold. */
  maybeSummarize(encoded: string): void;
}

export function createSummaries(o: SummariesOptions): Summaries {
  const { store, clock, log } = o;
  const mc = o.config.memory;
  /** Channels this instance is summarizing now. */
  const summarizing = new Set<string>();

  /** Takes the create-once claim on a stretch, or an abandoned one; false when another instance has it. */
  async function claim(encoded: string, first: string, channel: string): Promise<boolean> {
    const k = key("c", encoded, first);
    const mine: StoredClaim = { instance: o.instance, at: clock.now() };
    try {
      await store.create(k, mine);
      return true;
    } catch (err) {
      if (!isKvConflict(err)) throw err;
    }
    const cur = await store.kv.get(k);
    if (!cur) return false; // released: the stretch is done
    let theirs: StoredClaim;
    try {
      theirs = JSON.parse(dec.decode(cur.value)) as StoredClaim;
    } catch {
      theirs = { instance: "unknown", at: 0 }; // unreadable: nobody can be holding it
    }
    if (clock.now() - theirs.at < CLAIM_TTL_MS) return false;
    try {
      await store.update(k, mine, cur.revision);
    } catch (err) {
      if (isKvConflict(err)) return false;
      throw err;
    }
    log.warn("memory: took over an abandoned summarization", { channel, from: theirs.instance });
    return true;
  }

  async function summaryText(channel: string, turns: HistoryMessage[]): Promise<string> {
    let transcript = turns
      .map((t) => `${t.role === "user" ? t.user ?? "user" : "assistant"}: ${t.content.slice(0, SUMMARY_TURN_CHARS)}`)
      .join("\n");
    if (transcript.length > SUMMARY_INPUT_CHARS) transcript = transcript.slice(-SUMMARY_INPUT_CHARS);
    const messages: Message[] = [
      { role: "system", content: SUMMARY_PROMPT },
      { role: "user", content: transcript },
    ];
    try {
      const text = o.summarizer
        ? await o.summarizer({ channel, messages })
        : (await o.providers.complete(messages, { temperature: 0.3, max_tokens: 400 })).content;
      if (text.trim()) return text.trim();
    } catch (err) {
      log.warn("memory: provider failed to summarize, storing a plain summary", { channel, error: (err as Error).message });
    }
    return fallbackSummary(turns);
  }

  async function summarize(encoded: string): Promise<void> {
    const st = await store.channel(encoded);
    if (st.messages <= mc.summarize_after) return;
    // The oldest messages down to half the threshold, never splitting a question from its answer.
    const ids = turnIds(st);
    const target = st.messages - Math.floor(mc.summarize_after / 2);
    let end = 0;
    let count = 0;
    while (end < ids.length && count < target) count += st.turns.get(ids[end++])!.length;
    if (end < ids.length && st.turns.get(ids[end])![0].role === "assistant") count += st.turns.get(ids[end++])!.length;
    const stretch = ids.slice(0, end);
    if (stretch.length === 0) return;
    const first = stretch[0];
    const last = stretch[stretch.length - 1];
    const turns = stretch.flatMap((id) => st.turns.get(id)!);
    if (!(await claim(encoded, first, st.name))) return;
    const claimKey = key("c", encoded, first);
    // Another instance may have finished this stretch just before the claim was free again.
    const now = await store.channel(encoded);
    if (!now.turns.has(first)) return store.remove(claimKey);

    const text = await summaryText(st.name, turns);
    const summary: StoredSummary = { summary: text, message_count: count, first, last, at: clock.now() };
    await store.put(key("s", encoded, first), summary);
    await Promise.all(stretch.map((id) => store.remove(key("t", encoded, id))));

    // The claim goes with its stretch, as do claims left on older stretches; claims on later
    // stretches (another instance's, now) stay. Summaries beyond MAX_SUMMARIES go too.
    const cleanup = [claimKey, ...[...now.claims].filter((id) => id < first).map((id) => key("c", encoded, id))];
    const summaries = [...sortedSummaries(now).map(([id]) => id).filter((id) => id !== first), first].sort();
    for (const id of summaries.slice(0, Math.max(0, summaries.length - MAX_SUMMARIES))) cleanup.push(key("s", encoded, id));
    await Promise.all(cleanup.map((k) => store.remove(k)));

    const eventId = "summarized-" + createHash("sha256").update(`${encoded}.${first}`).digest("base64url").slice(0, 22);
    o.events.emit("summarized", { channel: st.name, message_count: count, summary_length: text.length }, { id: eventId });
  }

  return {
    maybeSummarize(encoded) {
      // A channel not cached (evicted since its read) is read in the background to find out.
      const st = store.cachedChannel(encoded);
      if (summarizing.has(encoded) || (st && st.messages <= mc.summarize_after)) return;
      summarizing.add(encoded);
      store.background(
        "summarization",
        summarize(encoded).finally(() => summarizing.delete(encoded)),
      );
    },
  };
}
