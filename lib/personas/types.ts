// Personas: what they need from the host.
import type { Config } from "../config";
import type { Logger } from "../context/types";
import type { Kv } from "../kv";

export interface PersonasOptions {
  /** The ROSEY_LLM_PERSONAS bucket. */
  kv: Kv;
  /** `config.personas` holds the operator's personas. */
  config: Config;
  log: Logger;
}

/** A defined persona as stored (key `def.<name>`). */
export interface StoredPersona {
  name: string;
  description: string;
  system_prompt: string;
  temperature?: number;
}

/** A channel's selection as stored (key `sel.<encoded channel>`). */
export interface StoredSelection {
  persona: string;
}
