// The messages a chat sends to the provider: the persona's prompt (the only system message),
// the channel's last summaries and the recalled facts quoted as data (framing.ts), as much
// recent history as fits the token budget, and the new message, in that order.
import type { Config } from "../config";
import type { Memory, Message, Persona } from "../schemas";
import { estimateTokens } from "../providers/tokens";
import { sortedSummaries, type ChannelState } from "./channel";
import { storedContextMessage } from "./framing";
import { recentHistory } from "./history";

/** ~4 tokens of framing per message, as the provider's estimate counts them. */
const cost = (m: Message) => 4 + estimateTokens(m.content);

/** Persona prompt messages kept (made once and shared); cleared when full. */
const PROMPTS_KEPT = 256;

export type ContextBuilder = (st: ChannelState, facts: Memory[], user: string, message: string, persona: Persona) => Message[];

export function createContextBuilder(config: Config): ContextBuilder {
  const mc = config.memory;
  // Persona prompts are the same few strings on every chat: their message is made once and
  // shared, so the provider's estimate of it is cached with it. Bounded, since personas
  // defined at run time are not.
  const prompts = new Map<string, Message>();
  const systemMessage = (content: string): Message => {
    let msg = prompts.get(content);
    if (!msg) {
      if (prompts.size >= PROMPTS_KEPT) prompts.clear();
      prompts.set(content, (msg = Object.freeze({ role: "system", content } as Message)));
    }
    return msg;
  };

  return (st, facts, user, message, persona) => {
    const prompt = systemMessage(persona.system_prompt);
    const head: Message[] = [prompt];
    let headCost = cost(prompt);
    // Summaries and facts are stored text that users wrote: quoted data, never instructions.
    const summaries = mc.summaries_in_context > 0 ? sortedSummaries(st).slice(-mc.summaries_in_context).map(([, s]) => s.value.summary) : [];
    const stored = storedContextMessage(summaries, facts.map((m) => ({ about: m.user_id, text: m.content })));
    if (stored) {
      head.push(stored);
      headCost += cost(stored);
    }
    const next: Message = { role: "user", content: `${user}: ${message}` };
    const history = recentHistory(st, mc.history_messages, mc.context_tokens - 3 - headCost - cost(next), cost);
    return [...head, ...history, next];
  };
}
