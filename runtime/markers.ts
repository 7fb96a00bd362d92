// Delete markers left by versions before markers expired carry no TTL: each stays until its
// bucket's max age drops it (memory: 91 days by default; personas: never), and a channel
// holding many of them is slow to load, since a load reads every key's last message. There is
// no pass over the whole bucket at start (it would cost time in proportion to what is stored).
// Instead, a channel load that meets such markers (runtime/kv-reads.ts) hands them here, and
// each one is replaced in the background by a marker that expires after
// storage.marker_ttl_seconds: a delete compare-and-set on the old marker's revision, so a key
// written again since is left alone. At most MAX_QUEUED wait; more are met again at a later
// load of their channel.
import type { Logger } from "../lib/context";
import type { StaleMarker } from "./kv-reads";
import type { TtlKV } from "./provision";
import { isWrongLastSequence } from "./kv";

/** Markers waiting to be replaced, at most. */
export const MAX_QUEUED = 1_024;
/** Replaced at once, at most. */
const PARALLEL = 16;

/** A sink for stale markers of one bucket that replaces them in the background. */
export function markerRetirer(kv: Pick<TtlKV, "delete">, bucket: string, log: Logger): (markers: StaleMarker[]) => void {
  const queue = new Map<string, number>();
  let running = false;

  const retire = async ({ key, revision }: StaleMarker) => {
    try {
      await kv.delete(key, { previousSeq: revision });
    } catch (err) {
      // Written again, or already replaced by another instance: nothing to do.
      if (isWrongLastSequence(err)) return;
      log.warn("old delete marker not replaced", { bucket, key, error: (err as Error).message });
    }
  };

  const drain = async () => {
    running = true;
    while (queue.size > 0) {
      const batch = [...queue].slice(0, PARALLEL).map(([key, revision]) => ({ key, revision }));
      for (const m of batch) queue.delete(m.key);
      await Promise.all(batch.map(retire));
    }
    running = false;
  };

  return (markers) => {
    for (const m of markers) if (queue.size < MAX_QUEUED) queue.set(m.key, m.revision);
    if (!running && queue.size > 0) void drain();
  };
}
