// Personas: what they need from the host and what they offer besides Personas.
import type { Config } from "../config";
import type { Logger, Personas } from "../context/types";
import type { Kv } from "../kv";

export interface PersonasOptions {
  /** The ROSEY_LLM_PERSONAS bucket. With `watch`, reads are served from a local copy. */
  kv: Kv;
  /** `config.personas` holds the operator's personas. */
  config: Config;
  log: Logger;
}

/** Personas plus the lifecycle calls the runtime and tests use. */
export interface PersonasService extends Personas {
  /**
   * Resolves once the local copy holds everything the bucket held at start (at once when
   * the bucket has no watch). Reads wait for it themselves; awaiting it at start only
   * keeps that wait off the first requests.
   */
  ready(): Promise<void>;
  /**
   * Waits until the local copy has seen every write any instance had acknowledged before
   * the call (one KV put and delete plus the watch delay). Reads do not call it themselves:
   * a select or define on another instance is seen once the watch delivers it.
   */
  sync(): Promise<void>;
  /** Stops the watch; later reads go to the bucket again. */
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
