// handlers/persona_list.ts — rosey.llm.persona.list
import { PersonaListRequest, PersonaListResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "persona_list";
export const request = PersonaListRequest;
export const response = PersonaListResponse;

/** Every persona: the built-ins, then those operators defined. */
export async function handle(_req: PersonaListRequest, ctx: Ctx): Promise<PersonaListResponse> {
  return { success: true, personas: await ctx.personas.list() };
}
