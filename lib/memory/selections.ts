// Each channel's persona selection, stored with the channel's keys (`p.<channel>.sel`, see
// channel.ts), so that the one read of a channel a chat makes brings its persona too.
// Written through the store, so this instance's next read sees it at once.
//
// Like the history, the key carries storage.history_ttl_days as its TTL. A read that finds the
// selection past half of that rewrites it in the background, by compare-and-set on the
// revision it read (a selection made meanwhile, on any instance, wins): a channel in use keeps
// its persona, one unused for that long goes back to the default.
import type { Clock, PreparedChannel } from "../context/types";
import type { Config } from "../config";
import { isKvConflict } from "../kv";
import { encodeName, key } from "../keys";
import type { ChannelState } from "./channel";
import type { Store } from "./store";
import type { ChannelSelections, StoredSelection } from "./types";

const DAY_MS = 86_400_000;

const selectionKey = (channel: string) => key("p", encodeName(channel), "sel");

export interface SelectionsOptions {
  config: Config;
  clock: Clock;
  /** The channel as `prepared` read it, or read now (see ChannelSelections.read). */
  channel(channel: string, prepared?: PreparedChannel): Promise<ChannelState>;
}

export function createSelections(store: Store, opts: SelectionsOptions): ChannelSelections {
  const { clock } = opts;
  const keepAfterMs = (opts.config.storage.history_ttl_days * DAY_MS) / 2;
  const stored = (persona: string): StoredSelection => ({ persona, at: clock.now() });

  /** Rewrites a selection read at `revision`, unless another write came first. */
  function keep(channel: string, persona: string, revision: number): void {
    const write = store.update(selectionKey(channel), stored(persona), revision).catch((err) => {
      if (!isKvConflict(err)) throw err;
    });
    store.background("keeping a persona selection", write);
  }

  return {
    async read(channel, prepared) {
      const sel = (await opts.channel(channel, prepared)).selection;
      if (sel && clock.now() - (sel.value.at ?? 0) >= keepAfterMs) keep(channel, sel.value.persona, sel.revision);
      return sel?.value ?? null;
    },

    held(channel) {
      const st = store.cachedChannel(encodeName(channel));
      return st && (st.selection?.value ?? null);
    },

    write: (channel, persona) => store.put(selectionKey(channel), stored(persona)),

    async adopt(channel, persona) {
      try {
        await store.create(selectionKey(channel), stored(persona));
        return true;
      } catch (err) {
        if (isKvConflict(err)) return false;
        throw err;
      }
    },
  };
}
