// handlers/persona_set.ts — rosey.llm.persona.set
import { PersonaResponse, PersonaSetRequest } from "../lib/schemas";
import type { Ctx } from "../lib/context";

export const name = "persona_set";
export const request = PersonaSetRequest;
export const response = PersonaResponse;

/**
 * {channel, persona} selects a persona for a channel (unknown → not_found);
 * {name, system_prompt, …} defines or updates an operator persona (built-ins are fixed).
 */
export async function handle(req: PersonaSetRequest, ctx: Ctx): Promise<PersonaResponse> {
  if ("channel" in req) return { success: true, persona: await ctx.personas.select(req.channel, req.persona) };
  const persona = await ctx.personas.define({
    name: req.name,
    description: req.description ?? "",
    system_prompt: req.system_prompt,
    temperature: req.temperature,
  });
  return { success: true, persona };
}
