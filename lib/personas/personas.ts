// Personas: the built-ins, the operator's from the configuration file, and those defined
// at run time through persona_set (bucket ROSEY_LLM_PERSONAS), plus each channel's choice.
//
// Built-in and operator personas are fixed: `builtin: true` tells clients that persona_set
// cannot redefine them (an operator changes them in the configuration, which may also
// replace a built-in's prompt under its own name). Every read goes to KV, so a persona
// defined or selected on one instance is seen by the next request on any other.
import type { Persona } from "../schemas";
import { PersonaName } from "../schemas";
import type { Personas } from "../context/types";
import { invalid, notFound } from "../errors";
import { encodeName, key } from "../keys";
import { getJson } from "../kv";
import { BUILTIN_PERSONAS } from "./builtins";
import type { PersonasOptions, StoredPersona, StoredSelection } from "./types";

const enc = new TextEncoder();
const bytes = (v: unknown) => enc.encode(JSON.stringify(v));

/** Name of the persona a channel uses until it selects another. */
export const DEFAULT_PERSONA = "default";

const defKey = (name: string) => key("def", name);
const selKey = (channel: string) => key("sel", encodeName(channel));

/** Builds the persona registry over the ROSEY_LLM_PERSONAS bucket. */
export function createPersonas(opts: PersonasOptions): Personas {
  const { kv, config, log } = opts;

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
    const p: Persona = { name: s.name, description: s.description, system_prompt: s.system_prompt, builtin: false };
    if (s.temperature !== undefined) p.temperature = s.temperature;
    return p;
  };

  async function get(name: string): Promise<Persona | null> {
    const f = fixed.get(name);
    if (f) return { ...f };
    if (!PersonaName.safeParse(name).success) return null;
    const s = await getJson<StoredPersona>(kv, defKey(name));
    return s ? fromStored(s.value) : null;
  }

  async function mustGet(name: string): Promise<Persona> {
    const p = await get(name);
    if (!p) throw notFound(`unknown persona "${name}"`);
    return p;
  }

  return {
    async list() {
      const names = (await kv.keys("def.*")).map((k) => k.slice("def.".length)).filter((n) => !fixed.has(n));
      const defined = (await Promise.all(names.map((n) => get(n)))).filter((p): p is Persona => p !== null);
      const builtins = BUILTIN_PERSONAS.map((b) => ({ ...fixed.get(b.name)! }));
      const others = [...[...fixed.values()].filter((p) => !BUILTIN_PERSONAS.some((b) => b.name === p.name)), ...defined];
      others.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return [...builtins, ...others];
    },

    get,

    async forChannel(channel, override) {
      if (override !== undefined) return mustGet(override);
      const sel = await getJson<StoredSelection>(kv, selKey(channel));
      if (!sel) return mustGet(DEFAULT_PERSONA);
      const p = await get(sel.value.persona);
      if (p) return p;
      // The operator removed a persona from the configuration that a channel had selected.
      log.warn("persona: channel selects an unknown persona, using the default", { channel, persona: sel.value.persona });
      return mustGet(DEFAULT_PERSONA);
    },

    async select(channel, name) {
      const p = await mustGet(name);
      await kv.put(selKey(channel), bytes({ persona: p.name } satisfies StoredSelection));
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
      await kv.put(defKey(p.name), bytes(stored));
      return fromStored(stored);
    },
  };
}
