// The messages a chat sends to the provider: the persona's prompt, the channel's last
// summaries, the recalled facts, as much recent history as fits the token budget, and the
// new message, in that order.
import type { Config } from "../config";
import type { Memory, Message, Persona } from "../schemas";
import { estimateTokens } from "../providers/tokens";
import { sortedSummaries, type ChannelState } from "./channel";
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
    if (mc.summaries_in_context > 0) {
      for (const [, s] of sortedSummaries(st).slice(-mc.summaries_in_context)) {
        s.msg ??= Object.freeze({ role: "system", content: `Previous conversation summary: ${s.value.summary}` } as Message);
        s.cost ??= cost(s.msg);
        head.push(s.msg);
        headCost += s.cost;
      }
    }
    if (facts.length > 0) {
      const lines = facts.map((m) => `- ${m.user_id === null ? "" : `(about ${m.user_id}) `}${m.content}`);
      const m: Message = { role: "system", content: `Remembered facts:\n${lines.join("\n")}` };
      head.push(m);
      headCost += cost(m);
    }
    const next: Message = { role: "user", content: `${user}: ${message}` };
    const history = recentHistory(st, mc.history_messages, mc.context_tokens - 3 - headCost - cost(next), cost);
    return [...head, ...history, next];
  };
}
