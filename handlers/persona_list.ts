// handlers/persona_list.ts — rosey.llm.persona.list
import { PersonaListRequest, PersonaListResponse } from "../lib/schemas";
import type { Ctx } from "../lib/context";
import { fitting, listBudget } from "../lib/reply";

export const name = "persona_list";
export const request = PersonaListRequest;
export const response = PersonaListResponse;

/**
 * The built-ins, then the configured and defined personas by name, as many as fit in one
 * NATS message; `next_cursor` continues the listing. A persona defined or deleted between
 * two pages may be skipped or repeated.
 */
export async function handle(req: PersonaListRequest, ctx: Ctx): Promise<PersonaListResponse> {
  const all = await ctx.personas.list();
  const from = Math.min(Number(req.cursor ?? 0), all.length);
  const rest = all.slice(from);
  const n = fitting(rest, listBudget(ctx.maxPayload), undefined, true);
  const reply: PersonaListResponse = { success: true, personas: rest.slice(0, n) };
  if (from + n < all.length) reply.next_cursor = String(from + n);
  return reply;
}
