// What each KV bucket holds, key by key: the layouts lib/limiter, lib/usage, lib/personas
// and lib/memory write, in one table that docs/contract.md is generated from and that tools
// reading a bucket (`rosey-llm usage`) match keys with.
//
// The variable parts of a layout (`<user>`, `<day>`, …) are explained in KEY_PARTS.
import { decodeName, encodeName } from "./index";

/** What each variable part of a key layout stands for. */
export const KEY_PARTS = {
  "<user>": "encodeName(user name): its UTF-8 bytes in base64url without padding, one key token whatever the name holds",
  "<channel>": "encodeName(channel name), likewise",
  "<day>": "a local date YYYY-MM-DD in ROSEY_TIMEZONE",
  "<persona>": "a persona name as given ([a-z0-9_-], at most 64 characters)",
  "<instance>": "encodeName(instance id); encodeName(instance id + \"~<n>\") once its lease was taken back n times",
  "<id>": "an id made by the service: time-ordered for history, a hash of scope and content for memories",
  "<minute>": "minutes since 1970-01-01T00:00Z (Unix time / 60 s)",
} as const;

export interface KeyLayout {
  /** Dot-separated tokens; `<name>` marks a variable part. */
  key: string;
  /** What a value under this key is. */
  holds: string;
}

/** Bucket (by its role, as in runtime/provision.ts BUCKETS) → what it is for and its keys. */
export const BUCKET_LAYOUTS = {
  limits: {
    holds:
      "Rate limits, token quotas, the global budget and today's usage, exact across instances (compare-and-set on each key).",
    keys: {
      user: {
        key: "u.<user>",
        holds:
          "One user's admission times of the last hour, today's requests, settled tokens and usage by provider, reservations in flight, threshold markers.",
      },
      channel: {
        key: "c.<channel>",
        holds:
          "Before channel documents moved to the memory bucket (`l.<channel>.doc`): one channel's admission times of the last hour and today's usage by provider. Still read by `rosey-llm usage` and the sweep of finished days until it expires, 48 h after its last write.",
      },
      global: { key: "g.<day>", holds: "The day's global token budget: tokens spent under closed leases and each instance's open lease." },
      instance: {
        key: "i.<day>.<instance>",
        holds: "What one instance settled that day, by provider: the service's totals are the sum of these; closed when its lease is taken back.",
      },
      userWrites: { key: "w.u.<user>.<minute>", holds: "{n}: one user's memory, context and persona writes in that minute. Expires after 120 s." },
      channelWrites: { key: "w.c.<channel>.<minute>", holds: "{n}: one channel's writes in that minute. Expires after 120 s." },
    },
  },
  usage: {
    holds:
      "Daily usage history by user, channel and instance; a user's or channel's finished day is copied here once, when their next day starts or by the sweep of documents nobody wrote since; an instance's while it serves.",
    keys: {
      user: { key: "d.<day>.u.<user>", holds: "One user's day: {requests, tokens, by_provider: {<provider>: {requests, tokens}}}." },
      channel: { key: "d.<day>.c.<channel>", holds: "One channel's day, same document." },
      instance: {
        key: "d.<day>.i.<instance>",
        holds: "One instance's share of the service's day, same document; a read sums the day's shares.",
      },
      sweep: {
        key: "sweep",
        holds: "{seq, done?}: where the sweep of finished days stands in the limits bucket (the next revision to read) and the last day it walked to its end.",
      },
      sweepMemory: { key: "sweep.memory", holds: "{seq, done?}: the same for the sweep's walk of the memory bucket's channel documents." },
    },
  },
  personas: {
    holds: "Personas defined through persona_define.",
    keys: {
      definition: { key: "def.<persona>", holds: "A defined persona: {name, description, system_prompt, temperature?, owner?}." },
      index: {
        key: "index",
        holds: "{names: {<persona>: ms}}: the defined personas, counted against ROSEY_PERSONAS_MAX_DEFINED; a new name is counted here by compare-and-set before its definition is written.",
      },
      legacySelection: {
        key: "sel.<channel>",
        holds:
          "Where earlier versions kept a channel's selected persona, {persona}: moved to the memory bucket (`p.<channel>.sel`) and deleted by a walk in the background, and read here until then.",
      },
      moved: { key: "migrated.sel", holds: "{at}: no `sel.<channel>` key is left; a start that finds it does not walk them again." },
    },
  },
  memory: {
    holds:
      "Each channel's conversation history, summaries of older history, long-term memories, selected persona and rate-limit document: every key of a channel matches `*.<channel>.*`, so a write conditioned on the last revision under that filter tells whether anything in the channel changed.",
    keys: {
      exchange: { key: "t.<channel>.<id>", holds: "One exchange: the user's message and the reply; ids sort by time. Expires after ROSEY_HISTORY_TTL_DAYS." },
      summary: { key: "s.<channel>.<id>", holds: "A summary of a stretch of history starting at that id (the stretch itself is deleted). Expires after ROSEY_HISTORY_TTL_DAYS." },
      claim: {
        key: "c.<channel>.<id>",
        holds: "A create-once claim: the one instance that summarizes that stretch; deleted with the stretch, taken over by another instance after 60 s when its instance died. Expires after ROSEY_HISTORY_TTL_DAYS.",
      },
      channelLimits: {
        key: "l.<channel>.doc",
        holds:
          "One channel's admission times of the last hour and today's usage by provider (the limiter's document `c.<channel>`, kept among the channel's keys so that a write of it can show them unchanged). Expires 48 h after its last write.",
      },
      memory: {
        key: "m.<channel>.<id>",
        holds:
          "A long-term memory; the id hashes scope and content, so equal facts meet on one key. With embeddings on, also `embedding`: {model (with `@<dimensions>` when ROSEY_EMBEDDINGS_DIMENSIONS is set), vector: base64 of the unit vector's float32 little-endian values}, never sent in replies or events. Goes with the bucket's max age, decay_days after its last use.",
      },
      selection: {
        key: "p.<channel>.sel",
        holds:
          "The persona a channel selected, {persona, at}: read with the rest of the channel. Expires after ROSEY_HISTORY_TTL_DAYS; rewritten when a read finds it past half of that, so a channel in use keeps it.",
      },
    },
  },
} as const satisfies Record<string, { holds: string; keys: Record<string, KeyLayout> }>;

const ENCODED = new Set(["<user>", "<channel>"]);

/**
 * A subject-style filter for a layout: given parts are filled in (names encoded), the rest
 * match one token each. `keyFilter("d.<day>.u.<user>", { user: "al" })` → `d.*.u.YWw`.
 */
export function keyFilter(layout: string, parts: Record<string, string> = {}): string {
  return layout
    .split(".")
    .map((t) => {
      const name = /^<(.+)>$/.exec(t)?.[1];
      if (name === undefined) return t;
      const v = parts[name];
      return v === undefined ? "*" : ENCODED.has(t) ? encodeName(v) : v;
    })
    .join(".");
}

/** The variable parts of `key` under `layout` (names decoded), or undefined when it does not match. */
export function parseKey(layout: string, key: string): Record<string, string> | undefined {
  const want = layout.split(".");
  const got = key.split(".");
  if (want.length !== got.length) return undefined;
  const out: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const name = /^<(.+)>$/.exec(want[i])?.[1];
    if (name === undefined) {
      if (want[i] !== got[i]) return undefined;
    } else {
      try {
        out[name] = ENCODED.has(want[i]) ? decodeName(got[i]) : got[i];
      } catch {
        return undefined;
      }
    }
  }
  return out;
}
