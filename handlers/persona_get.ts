// handlers/persona_get.ts — rosey.llm.persona.get
import { PersonaGetRequest, PersonaResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "persona_get";
export const request = PersonaGetRequest;
export const response = PersonaResponse;

/** The persona a channel uses: its selection, or the default. */
export async function handle(req: PersonaGetRequest, ctx: Ctx): Promise<PersonaResponse> {
  return { success: true, persona: await ctx.personas.forChannel(req.channel) };
}
