// Personas: what they need from the host and what they offer besides Personas.
import type { Config } from "../config";
import type { Clock, Logger, Personas } from "../context/types";
import type { Kv } from "../kv";
import type { ChannelSelections } from "../memory";
import type { MoveSettings, SelectionMove } from "./move";

export interface PersonasOptions {
  /** The ROSEY_LLM_PERSONAS bucket; must support `snapshot`, `changes` and `scan`. */
  kv: Kv;
  /** Where each channel's selection is kept: with the channel's memory (MemoryService.selections). */
  selections: ChannelSelections;
  /** `config.personas` holds the operator's personas. */
  config: Config;
  log: Logger;
  clock?: Clock;
  /** The pace of the move of selections stored by earlier versions (move.ts). */
  move?: Partial<MoveSettings>;
}

/** Personas plus the lifecycle calls the runtime and tests use. */
export interface PersonasService extends Personas {
  /** The move of selections stored by earlier versions; the runtime starts it. */
  move: SelectionMove;
  /** Stops the move (waiting for its step in flight) and forgets every cached definition. */
  close(): Promise<void>;
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
