// The move of channels' persona selections from where earlier versions kept them, key
// `sel.<channel>` of the personas bucket, to the channel's own keys of the memory bucket
// (`p.<channel>.sel`, lib/memory/selections.ts), where a chat's read of the channel finds them.
//
// Nothing is walked at start: an instance is ready whatever the bucket holds. A walk in the
// background moves the legacy keys a batch per step (Kv.scan: one round trip reads up to
// `batch` of them), at most one step every `everyMs`: each is stored under the new key unless
// the channel has a selection there already (create-once: one made since, on any instance, is
// newer and wins), then deleted. Instances may walk at once: a second copy of a step finds the
// new keys stored and deletes keys already deleted. The walk that reaches the end of the bucket
// stores MOVED_KEY; later starts read that one key and walk no more.
//
// Until this instance knows the move is finished, a channel with no selection under the new
// key has its legacy key read too (legacy()), and a selection made deletes the legacy key
// after storing the new one (forget()). A chat whose channel's selection moves between those
// two reads may see no selection, once, while its channel is being moved.
import type { Clock, Logger } from "../context/types";
import { decodeName, encodeName, key } from "../keys";
import type { Kv, KvChange } from "../kv";
import type { ChannelSelections, StoredSelection } from "../memory";

/** Key of the personas bucket recording that no legacy selection is left. */
export const MOVED_KEY = "migrated.sel";

export interface MoveSettings {
  /** Legacy keys read and moved in one step. */
  batch: number;
  /** Time between two steps. */
  everyMs: number;
  /** Time before a step that failed is tried again. */
  retryMs: number;
}

export const MOVE_DEFAULTS: MoveSettings = { batch: 256, everyMs: 1_000, retryMs: 60_000 };

export interface SelectionMoveOptions {
  /** The personas bucket; must support `scan`. */
  kv: Kv;
  selections: ChannelSelections;
  clock: Clock;
  log: Logger;
  settings?: Partial<MoveSettings>;
}

export interface SelectionMove {
  /** True once this instance knows that no legacy selection is left. */
  finished(): boolean;
  /** The channel's legacy selection, or null (one read). */
  legacy(channel: string): Promise<StoredSelection | null>;
  /** Deletes the channel's legacy selection (nothing once the move is finished). */
  forget(channel: string): Promise<void>;
  /** One step of the walk now (tests, and the timer): true once the move is finished. */
  step(): Promise<boolean>;
  /** Starts the walk in the background, a step at a time (see the header). */
  start(): void;
  /** Stops the walk and waits for the step in flight. */
  stop(): Promise<void>;
}

const LEGACY = "sel.*";
const legacyKey = (channel: string) => key("sel", encodeName(channel));
const enc = new TextEncoder();
const dec = new TextDecoder();

export function createSelectionMove(opts: SelectionMoveOptions): SelectionMove {
  const s = { ...MOVE_DEFAULTS, ...opts.settings };
  const { kv, selections, clock, log } = opts;
  if (!kv.scan) throw new Error(`persona: the KV bucket ${kv.bucket} cannot be walked to move selections`);
  const scan = kv.scan.bind(kv);
  let done = false;
  /** Whether MOVED_KEY was read yet. */
  let checked = false;
  /** The revision the walk goes on from. */
  let from = 1;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;

  /** A legacy value, or null (logged, key named, value not) when it is not a selection. */
  function parse(k: string, value: Uint8Array): StoredSelection | null {
    try {
      const v = JSON.parse(dec.decode(value)) as StoredSelection;
      if (typeof v === "object" && v !== null && typeof v.persona === "string") return { persona: v.persona };
    } catch {
      // not JSON
    }
    log.warn("persona: unreadable entry skipped", { key: k });
    return null;
  }

  /** The channel a legacy key names, or undefined when no channel's selection could be stored under it. */
  function channelOf(k: string): string | undefined {
    const token = k.slice("sel.".length);
    try {
      const channel = decodeName(token);
      return encodeName(channel) === token ? channel : undefined;
    } catch {
      return undefined;
    }
  }

  /** Moves one legacy key (a deleted one has nothing to move). */
  async function move(c: KvChange): Promise<void> {
    if (!c.entry) return;
    const channel = channelOf(c.key);
    const sel = channel === undefined ? null : parse(c.key, c.entry.value);
    if (channel !== undefined && sel) await selections.adopt(channel, sel.persona);
    await kv.delete(c.key);
  }

  async function step(): Promise<boolean> {
    if (done) return true;
    if (!checked) {
      done = (await kv.get(MOVED_KEY)) !== null;
      checked = true;
      if (done) return true;
    }
    const { changes, more } = await scan(LEGACY, from, s.batch);
    await Promise.all(changes.map(move));
    if (changes.length > 0) from = changes[changes.length - 1].revision + 1;
    if (!more) {
      await kv.put(MOVED_KEY, enc.encode(JSON.stringify({ at: clock.now() })));
      done = true;
      log.info("persona selections moved to the memory bucket");
    }
    return done;
  }

  function schedule(ms: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      running = step().then(
        (finished) => (finished ? undefined : schedule(s.everyMs)),
        (err) => {
          log.warn("moving persona selections failed; trying again", { error: (err as Error).message });
          schedule(s.retryMs);
        },
      );
    }, ms);
    timer.unref?.();
  }

  return {
    finished: () => done,

    async legacy(channel) {
      const e = await kv.get(legacyKey(channel));
      return e ? parse(e.key, e.value) : null;
    },

    async forget(channel) {
      if (!done) await kv.delete(legacyKey(channel));
    },

    step,

    start: () => schedule(0),

    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
