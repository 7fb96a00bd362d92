// Daily usage history in the ROSEY_LLM_USAGE bucket (kept storage.usage_max_age_days), for
// `rosey-llm usage`: the limiter's own documents hold only the current day.
//
//   d.<day>.u.<user>, d.<day>.c.<channel>   a user's or a channel's finished day, written
//       once (create-once: whoever comes second finds it there): by the write that starts
//       their next day, or by the sweep (sweep.ts) that walks the documents nobody wrote
//       since their day ended, before they expire (48 h after their last write); until then
//       the day is read from u.<user> / c.<channel> (stored as l.<channel>.doc in the memory bucket).
//   d.<day>.i.<instance>   an instance's share of the service's day, copied after its first
//       settled call of the day and then with each write of its lease (heartbeats: every
//       10 s while it serves), and when its lease is taken back.
// The copies are background writes, a handful per user, channel and instance a day; a
// failed one is logged and the day's figures stay where they were.
import type { Logger } from "../context/types";
import { key } from "../keys";
import { isKvConflict, type Kv } from "../kv";
import type { DayUsage, Spend } from "./types";

/** A day's document in the usage bucket (the layout lib/keys/layout.ts documents). */
export interface HistoryDoc {
  requests: number;
  tokens: number;
  by_provider: Record<string, { requests: number; tokens: number }>;
}

const enc = new TextEncoder();

/** The usage bucket's form of a day's spend. */
export function historyDoc(s: Spend): HistoryDoc {
  const by: HistoryDoc["by_provider"] = {};
  for (const [p, [requests, tokens]] of Object.entries(s.p)) by[p] = { requests, tokens };
  return { requests: s.q, tokens: s.u, by_provider: by };
}

/** The history key of a limiter document's day: `u.X` → `d.<day>.u.X`, `i.<day>.X` → `d.<day>.i.X`. */
export function historyKey(docKey: string, day: string): string {
  const [kind, ...rest] = docKey.split(".");
  return key("d", day, kind, rest[rest.length - 1]);
}

export interface History {
  /** Copies the day so far of the document under `docKey` (an instance's share: written again as it grows). */
  copy(docKey: string, day: Spend, dayId: string): void;
  /** Keeps a finished day of a user's or channel's document, unless it is kept already. */
  keep(docKey: string, day: DayUsage): Promise<void>;
}

/** Writes history to `kv`; without one (tests, tools) nothing is kept. */
export function createHistory(kv: Kv | undefined, log: Logger): History {
  const failed = (k: string) => (err: unknown) => log.warn("usage history not written", { key: k, error: (err as Error).message });
  return {
    copy(docKey, day, dayId) {
      if (!kv) return;
      const k = historyKey(docKey, dayId);
      kv.put(k, enc.encode(JSON.stringify(historyDoc(day)))).catch(failed(k));
    },
    async keep(docKey, day) {
      if (!kv) return;
      const k = historyKey(docKey, day.w);
      await kv.create(k, enc.encode(JSON.stringify(historyDoc(day)))).catch((err) => {
        if (!isKvConflict(err)) throw err;
      });
    },
  };
}
