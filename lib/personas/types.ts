// Personas: what they need from the host and what they offer besides Personas.
import type { Config } from "../config";
import type { Clock, Logger, Personas } from "../context/types";
import type { Kv } from "../kv";

export interface PersonasOptions {
  /** The ROSEY_LLM_PERSONAS bucket; must support `snapshot` and `changes`. */
  kv: Kv;
  /** `config.personas` holds the operator's personas; `config.memory.cache_channels` bounds the cached selections. */
  config: Config;
  log: Logger;
  clock?: Clock;
}

/** Personas plus the lifecycle call the runtime and tests use. */
export interface PersonasService extends Personas {
  /** Forgets every cached definition and selection. */
  close(): void;
}

/** A defined persona as stored (key `def.<name>`). */
export interface StoredPersona {
  name: string;
  description: string;
  system_prompt: string;
  temperature?: number;
  /** Who defined it, as persona_define's caller claimed. */
  owner?: string;
}

/** A channel's selection as stored (key `sel.<encoded channel>`). */
export interface StoredSelection {
  persona: string;
}
