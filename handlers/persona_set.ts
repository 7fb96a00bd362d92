// handlers/persona_set.ts — rosey.llm.persona.set
import { PersonaResponse, PersonaSetRequest } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "persona_set";
export const request = PersonaSetRequest;
export const response = PersonaResponse;

/**
 * Selects a persona for a channel (unknown → not_found); counts against the channel's write
 * limit. Defining one is persona_define's, an admin subject.
 */
export async function handle(req: PersonaSetRequest, ctx: Ctx): Promise<PersonaResponse> {
  await ctx.writes.admit({ channel: req.channel, admin: ctx.admin === true });
  return { success: true, persona: await ctx.personas.select(req.channel, req.persona) };
}
