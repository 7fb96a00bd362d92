// Personas: the built-ins, the operator's from the configuration file, and those defined
// at run time through persona_define (bucket ROSEY_LLM_PERSONAS), plus each channel's choice.
//
// Built-in and operator personas are fixed: `builtin: true` tells clients that they cannot be
// redefined or deleted (an operator changes them in the configuration, which may also
// replace a built-in's prompt under its own name).
//
// Keys: def.<name> (a defined persona), sel.<encoded channel> (a channel's selection),
// sync.<tag> (a short-lived barrier, see start()).
//
// Consistency: definitions and selections are mirrored into this instance by a watch on the
// bucket, so the chat path reads a channel's persona without a round trip. Writes go to KV
// first and are applied to the mirror with the revision KV returned: an instance always
// reads its own writes at once. A select or define made on another instance is seen once
// the watch delivers it, in bucket order, typically well under a millisecond later on one
// server (a read made in the same instant as the other instance's write may still miss it;
// a caller that must see such a write calls sync() first). A persona name the mirror does
// not know is looked up in KV before it is refused, so "define on one instance, select on
// another" never fails for want of the watch.
// Without a watch (a Kv that has none) every read goes to KV, as it did before the mirror.
import { randomBytes } from "node:crypto";
import type { Persona } from "../schemas";
import { PersonaName } from "../schemas";
import { invalid, notFound } from "../errors";
import { encodeName, key } from "../keys";
import { WatchProgress, getJson, type KvEntry } from "../kv";
import { BUILTIN_PERSONAS } from "./builtins";
import type { PersonasOptions, PersonasService, StoredPersona, StoredSelection } from "./types";

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (v: unknown) => enc.encode(JSON.stringify(v));

/** Name of the persona a channel uses until it selects another. */
export const DEFAULT_PERSONA = "default";
/** Longest wait for a barrier to come back through the watch. */
const SYNC_TIMEOUT_MS = 5_000;

const defKey = (name: string) => key("def", name);
const selKey = (channel: string) => key("sel", encodeName(channel));

interface Versioned<T> {
  value: T;
  revision: number;
}

/** One macrotask: lets watch deliveries already read from the socket reach the mirror first. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Builds the persona registry over the ROSEY_LLM_PERSONAS bucket. */
export function createPersonas(opts: PersonasOptions): PersonasService {
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
    if (s.owner !== undefined) p.owner = s.owner;
    return p;
  };

  // ------------------------------------------------------------ the mirror

  /** Defined personas by name and selections by encoded channel, as the watch delivered them. */
  const defs = new Map<string, Versioned<StoredPersona>>();
  const sels = new Map<string, Versioned<StoredSelection>>();
  /** True while the mirror is complete and fed by the watch; false means "read KV". */
  let live = false;
  let closed = false;
  let stopWatch: (() => void) | undefined;
  const progress = new WatchProgress();

  /** Applies one bucket entry (null = deleted); an older revision than the one held is ignored. */
  function apply(k: string, entry: KvEntry | null): void {
    const dot = k.indexOf(".");
    const kind = k.slice(0, dot);
    const id = k.slice(dot + 1);
    const map: Map<string, Versioned<unknown>> | undefined = kind === "def" ? defs : kind === "sel" ? sels : undefined;
    if (!map || !id) return;
    if (entry === null) {
      map.delete(id);
      return;
    }
    const cur = map.get(id);
    if (cur && cur.revision >= entry.revision) return;
    try {
      map.set(id, { value: JSON.parse(dec.decode(entry.value)), revision: entry.revision });
    } catch {
      log.warn("persona: unreadable entry skipped", { key: k });
    }
  }

  function onWatch(k: string, entry: KvEntry | null): void {
    apply(k, entry);
    if (entry) progress.advance(entry.revision);
  }

  /**
   * Writes a short-lived barrier key and waits until it comes back through the watch: the
   * watch delivers in bucket order, so by then the mirror holds every write acknowledged
   * before it, on any instance. False when the watch did not catch up in time.
   */
  async function barrier(): Promise<boolean> {
    const k = key("sync", randomBytes(6).toString("base64url"));
    // Expires by itself should this process die before deleting it.
    const revision = await kv.put(k, bytes({ at: Date.now() }), { ttlSeconds: 60 });
    const caughtUp = await progress.waitFor(revision, SYNC_TIMEOUT_MS);
    // The barrier has done its job; nobody reads it.
    kv.delete(k).catch((err) => log.warn("persona: barrier cleanup failed", { error: (err as Error).message }));
    return caughtUp;
  }

  /** Starts the watch and waits until it has replayed the bucket. */
  async function start(): Promise<void> {
    if (!kv.watch) return;
    try {
      const stop = await kv.watch(">", onWatch);
      if (closed) return stop();
      stopWatch = stop;
      // Everything stored before the watch started comes back through it before the barrier.
      if (!(await barrier())) {
        log.warn("persona: watch did not catch up in time, reading personas from KV", { seen: progress.seen });
        return;
      }
      live = !closed;
    } catch (err) {
      log.error("persona: watch failed to start, reading personas from KV", { error: (err as Error).message });
    }
  }

  const started = start();

  /** Waits for the initial load; true when reads may be served from the mirror. */
  async function mirrored(): Promise<boolean> {
    await started;
    if (!live) return false;
    // A change delivered in the same socket read as this request is still on its way
    // through the watch's async iterator; one turn of the event loop lets it land first.
    // (A select on one connection read at once through another missed it ~80 % of the time
    // without this turn, ~1 % with it; on the chat path it overlaps the admission round trip.)
    await nextTurn();
    return live;
  }

  // ------------------------------------------------------------ reads

  /** A defined persona from KV, applied to the mirror so the next read needs no round trip. */
  async function readDef(name: string): Promise<StoredPersona | null> {
    const k = defKey(name);
    const e = await kv.get(k);
    if (!e || e.value.length === 0) return null;
    apply(k, e);
    return JSON.parse(dec.decode(e.value)) as StoredPersona;
  }

  /** A persona by name; `fromMirror` says whether the caller already found the mirror usable. */
  async function lookup(name: string, fromMirror: boolean): Promise<Persona | null> {
    const f = fixed.get(name);
    if (f) return { ...f };
    if (!PersonaName.safeParse(name).success) return null;
    // The mirror may not have a persona defined elsewhere a moment ago: look it up before refusing it.
    const s = (fromMirror && defs.get(name)?.value) || (await readDef(name));
    return s ? fromStored(s) : null;
  }

  async function get(name: string): Promise<Persona | null> {
    return lookup(name, !fixed.has(name) && (await mirrored()));
  }

  async function mustGet(name: string): Promise<Persona> {
    const p = await get(name);
    if (!p) throw notFound(`unknown persona "${name}"`);
    return p;
  }

  // ------------------------------------------------------------ the interface

  return {
    ready: () => started,

    async sync() {
      if (!(await mirrored())) return; // reads go to KV: nothing to wait for
      if (!(await barrier())) log.warn("persona: watch did not catch up in time", { seen: progress.seen });
    },

    close() {
      closed = true;
      live = false;
      stopWatch?.();
      stopWatch = undefined;
      progress.releaseAll();
    },

    async list() {
      const fromMirror = await mirrored();
      const stored = fromMirror ? [...defs.keys()] : (await kv.keys("def.*")).map((k) => k.slice("def.".length));
      const names = stored.filter((n) => !fixed.has(n));
      const defined = (await Promise.all(names.map((n) => lookup(n, fromMirror)))).filter((p): p is Persona => p !== null);
      const builtins = BUILTIN_PERSONAS.map((b) => ({ ...fixed.get(b.name)! }));
      const others = [...[...fixed.values()].filter((p) => !BUILTIN_PERSONAS.some((b) => b.name === p.name)), ...defined];
      others.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return [...builtins, ...others];
    },

    get,

    async forChannel(channel, override) {
      if (override !== undefined) return mustGet(override);
      const fromMirror = await mirrored();
      const selected = fromMirror
        ? sels.get(encodeName(channel))?.value.persona
        : (await getJson<StoredSelection>(kv, selKey(channel)))?.value.persona;
      if (selected === undefined) return mustGet(DEFAULT_PERSONA);
      const p = await lookup(selected, fromMirror);
      if (p) return p;
      // The persona a channel had selected was deleted, or removed from the configuration.
      log.warn("persona: channel selects an unknown persona, using the default", { channel, persona: selected });
      return mustGet(DEFAULT_PERSONA);
    },

    async select(channel, name) {
      const p = await mustGet(name);
      const k = selKey(channel);
      const value = bytes({ persona: p.name } satisfies StoredSelection);
      const revision = await kv.put(k, value);
      // Our own write is visible to our next read without waiting for the watch.
      apply(k, { key: k, value, revision });
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
      const k = defKey(p.name);
      const value = bytes(stored);
      const revision = await kv.put(k, value);
      apply(k, { key: k, value, revision });
      return fromStored(stored);
    },

    async remove(name) {
      if (fixed.has(name)) throw invalid(`name: persona "${name}" is built in or set by the operator and cannot be deleted`);
      const p = await mustGet(name);
      const k = defKey(name);
      await kv.delete(k);
      apply(k, null);
      return p;
    },
  };
}
