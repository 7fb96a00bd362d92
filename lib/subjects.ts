// Every endpoint and its subject, defined once. The full subject is `<prefix>.<suffix>`.
export const ENDPOINTS = {
  chat: { suffix: "llm.chat", description: "Chat in a channel with its persona, memory and history" },
  complete: { suffix: "llm.complete", description: "Raw chat completion over a list of messages" },
  summarize: { suffix: "llm.summarize", description: "Summarize a text (concise, detailed or bullets)" },
  memory_add: { suffix: "llm.memory.add", description: "Remember a fact, preference or topic for a channel" },
  memory_recall: { suffix: "llm.memory.recall", description: "Recall the memories most relevant to a query" },
  memory_forget: { suffix: "llm.memory.forget", description: "Forget one memory, or all of a user's" },
  context_reset: { suffix: "llm.context.reset", description: "Drop a channel's history and summaries, keep memories" },
  persona_get: { suffix: "llm.persona.get", description: "The persona a channel uses" },
  persona_set: { suffix: "llm.persona.set", description: "Select a channel's persona, or define one" },
  persona_list: { suffix: "llm.persona.list", description: "Every persona, built-in and defined" },
  status: { suffix: "llm.status", description: "Health, providers and today's totals" },
  usage: { suffix: "llm.usage", description: "Today's usage and remaining limits of a user or channel" },
} as const;

export type EndpointName = keyof typeof ENDPOINTS;

/** The subject an endpoint listens on. */
export const endpointSubject = (prefix: string, name: EndpointName) => `${prefix}.${ENDPOINTS[name].suffix}`;
