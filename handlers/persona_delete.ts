// handlers/persona_delete.ts — rosey.llm.admin.persona.delete
import { PersonaDeleteRequest, PersonaResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "persona_delete";
export const request = PersonaDeleteRequest;
export const response = PersonaResponse;

/**
 * Deletes a defined persona and returns it; unknown → not_found, built-in or configured →
 * validation. Channels that selected it use the default persona from then on.
 */
export async function handle(req: PersonaDeleteRequest, ctx: Ctx): Promise<PersonaResponse> {
  return { success: true, persona: await ctx.personas.remove(req.name) };
}
