// Public surface of personas.
export { createPersonas, DEFAULT_PERSONA } from "./personas";
export { BUILTIN_PERSONAS } from "./builtins";
export type * from "./types";
