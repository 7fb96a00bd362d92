// Reads back what a chat context quotes from a channel's memory (lib/memory/framing.ts):
// the summaries and facts inside the data block of its stored-context message.
import { DATA_CLOSE, DATA_OPEN, type QuotedFact } from "../../lib/memory/framing";
import type { Message } from "../../lib/schemas";

export interface StoredData {
  /** Position of the stored-context message in the context. */
  index: number;
  summaries: string[];
  facts: QuotedFact[];
}

/** The quoted data of a context, or null when it quotes nothing. */
export function storedData(messages: readonly Message[]): StoredData | null {
  const index = messages.findIndex((m) => m.role !== "system" && m.content.includes(DATA_OPEN));
  if (index < 0) return null;
  const text = messages[index].content;
  const data = JSON.parse(text.slice(text.indexOf(DATA_OPEN) + DATA_OPEN.length, text.lastIndexOf(DATA_CLOSE)));
  return { index, summaries: data.summaries ?? [], facts: data.facts ?? [] };
}
