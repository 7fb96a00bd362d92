// handlers/persona_define.ts — rosey.llm.admin.persona.define
import { PersonaDefineRequest, PersonaResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "persona_define";
export const request = PersonaDefineRequest;
export const response = PersonaResponse;

/**
 * Defines a persona, or updates one defined earlier (built-in and configured ones are fixed).
 * Its system prompt becomes the instructions of every channel that selects it, which is why
 * this is an admin subject. Counts against the owner's write limit when one is named. A new
 * name beyond ROSEY_PERSONAS_MAX_DEFINED defined personas is refused with storage_full.
 */
export async function handle(req: PersonaDefineRequest, ctx: Ctx): Promise<PersonaResponse> {
  await ctx.writes.admit({ user: req.owner, admin: ctx.admin === true });
  const persona = await ctx.personas.define({
    name: req.name,
    description: req.description ?? "",
    system_prompt: req.system_prompt,
    temperature: req.temperature,
    owner: req.owner,
  });
  return { success: true, persona };
}
