// Every endpoint and its subject, defined once. The full subject is `<prefix>.<suffix>`.
// Administrative actions (defining and deleting personas, forgetting memories, resetting a
// channel's context) live under `llm.admin.`: one permission, `<prefix>.llm.admin.>`, grants
// or withholds all of them, apart from what plugins may call (docs/security.md).
export const ENDPOINTS = {
  chat: { suffix: "llm.chat", description: "Chat in a channel with its persona, memory and history" },
  complete: { suffix: "llm.complete", description: "Raw chat completion over a list of messages" },
  summarize: { suffix: "llm.summarize", description: "Summarize a text (concise, detailed or bullets)" },
  memory_add: { suffix: "llm.memory.add", description: "Remember a fact, preference or topic for a channel" },
  memory_recall: { suffix: "llm.memory.recall", description: "Recall the memories most relevant to a query" },
  persona_get: { suffix: "llm.persona.get", description: "The persona a channel uses" },
  persona_set: { suffix: "llm.persona.set", description: "Select a channel's persona" },
  persona_list: { suffix: "llm.persona.list", description: "Every persona, built-in and defined" },
  status: { suffix: "llm.status", description: "Health, providers and today's totals" },
  usage: { suffix: "llm.usage", description: "Today's usage and remaining limits of a user or channel" },
  persona_define: { suffix: "llm.admin.persona.define", description: "Define or update a persona (admin)" },
  persona_delete: { suffix: "llm.admin.persona.delete", description: "Delete a defined persona (admin)" },
  memory_forget: { suffix: "llm.admin.memory.forget", description: "Forget one memory, or all of a user's (admin)" },
  context_reset: { suffix: "llm.admin.context.reset", description: "Drop a channel's history and summaries, keep memories (admin)" },
} as const;

export type EndpointName = keyof typeof ENDPOINTS;

/** The subject an endpoint listens on. */
export const endpointSubject = (prefix: string, name: EndpointName) => `${prefix}.${ENDPOINTS[name].suffix}`;

/** The subject token under which every administrative endpoint listens. */
export const ADMIN_TOKEN = "llm.admin.";

/** True for an endpoint on the administrative subjects. */
export const isAdminEndpoint = (name: EndpointName) => ENDPOINTS[name].suffix.startsWith(ADMIN_TOKEN);
