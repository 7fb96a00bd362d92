// The cap on personas defined through persona_define (storage.personas_max_defined), exact
// across instances.
//
// Key `index` of the personas bucket holds the defined names, each with when it was counted:
// {names: {<name>: ms}}. A new name is counted by compare-and-set on that one document before
// its definition is written, so defines racing on any number of instances are counted one
// after another and no more than the cap get in; updating a defined persona counts nothing.
// An index rather than counting the definitions after writing and taking back one too many:
// two defines racing for the last place would then both see one too many and both be refused.
// Definitions are few and rarely written, so one document rewritten per new name is cheap.
//
// The index heals: a name counted whose definition never came (its instance died in between,
// or the write failed) stops counting once it is PENDING_MS old; a deleted persona leaves the
// index with its deletion, or at the next count when that write was lost; definitions the
// index does not hold (stored before it existed) are counted as they are found.
import { z } from "zod";
import type { Clock, Logger } from "../context/types";
import { RoseyError } from "../errors";
import { casUpdate, checkedKv, type Kv } from "../kv";

/** Key of the index in the personas bucket. */
export const INDEX_KEY = "index";

/** A name counted this recently may still be waiting for its definition to be written. */
export const PENDING_MS = 60_000;

const IndexDoc = z.strictObject({ names: z.record(z.string(), z.number()) });
type IndexDoc = z.infer<typeof IndexDoc>;

export interface DefinedCount {
  /** Counts a name not yet defined, or throws storage_full when `max` are defined. */
  admit(name: string, defined: ReadonlyMap<string, unknown>): Promise<void>;
  /** Takes a name out of the count (after its definition is deleted, or was never written). */
  release(name: string): Promise<void>;
}

export function createDefinedCount(opts: { kv: Kv; max: number; setting: string; clock: Clock; log: Logger }): DefinedCount {
  const { max, clock, log } = opts;
  // A malformed index reads as absent and is rebuilt from the definitions.
  const kv = checkedKv(opts.kv, () => IndexDoc, log);

  return {
    async admit(name, defined) {
      await casUpdate<IndexDoc, void>(kv, INDEX_KEY, (cur) => {
        const now = clock.now();
        // Names are keys of a Map here: a persona may be called "constructor" or "__proto__".
        const names = new Map(Object.entries(cur?.names ?? {}).filter(([n, at]) => defined.has(n) || now - at < PENDING_MS));
        for (const n of defined.keys()) if (!names.has(n)) names.set(n, 0);
        if (names.has(name)) return { value: undefined, result: undefined };
        if (names.size >= max) {
          throw new RoseyError(
            "storage_full",
            `Persona limit reached: ${names.size} personas are defined and ${opts.setting} allows ${max}; delete one or raise the setting. Nothing was changed.`,
          );
        }
        names.set(name, now);
        return { value: { names: Object.fromEntries(names) }, result: undefined };
      });
    },

    async release(name) {
      await casUpdate<IndexDoc, void>(kv, INDEX_KEY, (cur) => {
        const names = new Map(Object.entries(cur?.names ?? {}));
        if (!names.delete(name)) return { value: undefined, result: undefined };
        return { value: { names: Object.fromEntries(names) }, result: undefined };
      }).catch((err) => log.warn("persona count not updated; the next define corrects it", { persona: name, error: (err as Error).message }));
    },
  };
}
