// Personas: the built-ins, the operator's from the configuration file, and those defined
// at run time through persona_define (bucket ROSEY_LLM_PERSONAS), plus each channel's choice.
//
// Built-in and operator personas are fixed: `builtin: true` tells clients that they cannot be
// redefined or deleted (an operator changes them in the configuration, which may also
// replace a built-in's prompt under its own name).
//
// Keys: def.<name> (a defined persona), index (the defined names, counted against
// storage.personas_max_defined: count.ts), and from earlier versions sel.<encoded channel>
// (a channel's selection, moved in the background: move.ts). A channel's selection is now one
// of the channel's keys in the memory bucket (lib/memory/selections.ts): a chat's read of the
// channel's memory brings it, so looking up its persona costs no read of its own.
//
// Consistency: the definitions are read as one group of keys (`def.*`, lib/kv/group-cache.ts)
// and selections with their channel; every read first brings what it uses up to date with its
// bucket (one round trip; the definitions are asked alongside a channel's read only when the
// channel last named a defined persona, after it when it names one now), so a select or
// define acknowledged on any instance is seen by the next read on every instance. Fixed
// personas need no read.
import type { Persona } from "../schemas";
import { PersonaName } from "../schemas";
import { invalid, notFound } from "../errors";
import { key } from "../keys";
import { GroupCache, staleAfter, type KvEntry } from "../kv";
import { settingName } from "../config";
import { BUILTIN_PERSONAS } from "./builtins";
import { createDefinedCount } from "./count";
import { createSelectionMove } from "./move";
import type { PersonasOptions, PersonasService, StoredPersona } from "./types";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Name of the persona a channel uses until it selects another. */
export const DEFAULT_PERSONA = "default";
/** Bytes the cached definitions may take. */
const CACHE_BYTES = 8 * 1024 * 1024;

/** The group of every definition. */
const DEFS = "def.*";
const defKey = (name: string) => key("def", name);

/** Stored definitions by persona name. */
type Values = Map<string, StoredPersona>;

const isPersona = (v: StoredPersona) =>
  typeof v === "object" && v !== null && typeof v.name === "string" && typeof v.system_prompt === "string" &&
  (v.temperature === undefined || typeof v.temperature === "number");

/** Applies one stored definition (null: deleted); throws on a value that is not one. */
function apply(values: Values, k: string, entry: KvEntry | null): void {
  const name = k.slice("def.".length);
  values.delete(name);
  if (!entry) return;
  const v = JSON.parse(dec.decode(entry.value));
  if (!isPersona(v)) throw new Error("not a stored persona");
  values.set(name, v);
}

const valuesBytes = (values: Values) => {
  let n = 0;
  for (const [id, v] of values) n += 200 + 2 * id.length + 2 * JSON.stringify(v).length;
  return n;
};

/** Builds the persona registry over the ROSEY_LLM_PERSONAS bucket. */
export function createPersonas(opts: PersonasOptions): PersonasService {
  const { kv, config, log, selections } = opts;
  const clock = opts.clock ?? { now: () => Date.now() };

  // Built-ins in their fixed order, each replaceable by an operator persona of the same name.
  const fixed = new Map<string, Persona>();
  for (const b of BUILTIN_PERSONAS) {
    const o = config.personas[b.name];
    fixed.set(b.name, o ? { ...b, ...o, name: b.name, builtin: true } : { ...b });
  }
  const operator = Object.entries(config.personas)
    .filter(([name]) => !fixed.has(name))
    .sort(([a], [b]) => a.localeCompare(b));
  for (const [name, p] of operator) fixed.set(name, { name, ...p, builtin: true });

  const fromStored = (s: StoredPersona): Persona => {
    const p: Persona = { name: s.name, description: s.description ?? "", system_prompt: s.system_prompt, builtin: false };
    if (s.temperature !== undefined) p.temperature = s.temperature;
    if (s.owner !== undefined) p.owner = s.owner;
    return p;
  };

  const cache = new GroupCache<Values>({
    kv,
    name: "persona",
    filter: (group) => group,
    empty: () => new Map(),
    apply,
    bytes: valuesBytes,
    maxGroups: 1,
    maxBytes: CACHE_BYTES,
    staleAfterMs: staleAfter(config.storage.marker_ttl_seconds),
    // Most deployments define none: knowing that saves loading the group again on every read.
    keepEmpty: true,
    clock,
    log,
  });

  const definitions = () => cache.use(DEFS);
  const count = createDefinedCount({
    kv,
    max: config.storage.personas_max_defined,
    setting: settingName("storage.personas_max_defined"),
    clock,
    log,
  });
  const move = createSelectionMove({ kv, selections, clock, log, settings: opts.move });
  /** True for no selection (the default) or a built-in/operator persona. */
  const isFixed = (name: string | undefined) => name === undefined || fixed.has(name);

  /** A persona by name from the fixed ones or the given definitions. */
  function lookup(name: string, defs: Map<string, StoredPersona>): Persona | null {
    const f = fixed.get(name);
    if (f) return { ...f };
    const s = PersonaName.safeParse(name).success ? defs.get(name) : undefined;
    return s ? fromStored(s) : null;
  }

  async function get(name: string): Promise<Persona | null> {
    const f = fixed.get(name);
    if (f) return { ...f };
    return PersonaName.safeParse(name).success ? lookup(name, await definitions()) : null;
  }

  async function mustGet(name: string): Promise<Persona> {
    const p = await get(name);
    if (!p) throw notFound(`unknown persona "${name}"`);
    return p;
  }

  /** Writes a definition and applies it to the cached definitions at once. */
  async function write(value: StoredPersona): Promise<void> {
    const k = defKey(value.name);
    const data = enc.encode(JSON.stringify(value));
    cache.wrote(DEFS, { key: k, value: data, revision: await kv.put(k, data) });
  }

  return {
    move,

    async close() {
      await move.stop();
      cache.clear();
    },

    async list() {
      const defs = await definitions();
      const defined = [...defs.keys()].filter((n) => !fixed.has(n)).map((n) => lookup(n, defs)).filter((p): p is Persona => p !== null);
      const builtins = BUILTIN_PERSONAS.map((b) => ({ ...fixed.get(b.name)! }));
      const others = [...[...fixed.values()].filter((p) => !BUILTIN_PERSONAS.some((b) => b.name === p.name)), ...defined];
      others.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return [...builtins, ...others];
    },

    get,

    async forChannel(channel, override, prepared) {
      if (override !== undefined) return mustGet(override);
      // What this instance last read of the channel says which reads to make alongside the
      // channel's: the definitions when it named a defined persona; its legacy key while
      // selections are being moved, when it had no selection.
      const last = selections.held(channel);
      const [stored, early, legacy] = await Promise.all([
        selections.read(channel, prepared),
        last && !isFixed(last.persona) ? definitions() : undefined,
        last || move.finished() ? undefined : move.legacy(channel),
      ]);
      // A channel with no selection of its own may still have one where earlier versions kept it.
      let sel = stored ?? legacy ?? null;
      if (!sel && legacy === undefined && !move.finished()) sel = await move.legacy(channel);
      const selected = sel?.persona;
      if (selected === undefined) return mustGet(DEFAULT_PERSONA);
      const p = isFixed(selected) ? lookup(selected, new Map()) : lookup(selected, early ?? (await definitions()));
      if (p) return p;
      // The persona a channel had selected was deleted, or removed from the configuration.
      log.warn("persona: channel selects an unknown persona, using the default", { channel, persona: selected });
      return mustGet(DEFAULT_PERSONA);
    },

    async select(channel, name) {
      const p = await mustGet(name);
      await selections.write(channel, p.name);
      await move.forget(channel);
      return p;
    },

    async define(p) {
      const name = PersonaName.safeParse(p.name);
      if (!name.success) throw invalid(`name: ${name.error.issues[0].message}`);
      if (fixed.has(p.name)) {
        throw invalid(`name: persona "${p.name}" is built in or set by the operator and cannot be redefined; choose another name`);
      }
      const stored: StoredPersona = { name: p.name, description: p.description ?? "", system_prompt: p.system_prompt };
      if (p.temperature !== undefined) stored.temperature = p.temperature;
      if (p.owner !== undefined) stored.owner = p.owner;
      // A new name takes one of the places storage.personas_max_defined allows; an update none.
      const defs = await definitions();
      const isNew = !defs.has(p.name);
      if (isNew) await count.admit(p.name, defs);
      try {
        await write(stored);
      } catch (err) {
        if (isNew) await count.release(p.name);
        throw err;
      }
      return fromStored(stored);
    },

    async remove(name) {
      if (fixed.has(name)) throw invalid(`name: persona "${name}" is built in or set by the operator and cannot be deleted`);
      const p = await mustGet(name);
      const k = defKey(name);
      await kv.delete(k);
      cache.deleted(DEFS, k);
      await count.release(name);
      return p;
    },
  };
}
