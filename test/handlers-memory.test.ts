// The memory, context and persona handlers called directly with a test context whose
// memory and personas are the real ones over in-memory buckets.
import { describe, expect, it } from "vitest";
import { defaultConfig } from "../lib/config";
import type { Providers } from "../lib/context";
import { isRoseyError } from "../lib/errors";
import { MemoryKv } from "../lib/kv";
import { silentLogger } from "../lib/log";
import { createMemory } from "../lib/memory";
import { createPersonas } from "../lib/personas";
import { MemoryForgetRequest, MemoryResponse, PersonaDefineRequest, PersonaResponse, PersonaSetRequest } from "../lib/schemas";
import * as add from "../handlers/memory_add";
import * as recall from "../handlers/memory_recall";
import * as forget from "../handlers/memory_forget";
import * as reset from "../handlers/context_reset";
import * as personaGet from "../handlers/persona_get";
import * as personaSet from "../handlers/persona_set";
import * as personaList from "../handlers/persona_list";
import * as personaDefine from "../handlers/persona_define";
import { createTestContext } from "./helpers/context";
import { rejectionOf } from "./helpers/assert";
import { storedData } from "./helpers/stored-context";

function ctx() {
  const clock = { now: () => Date.parse("2025-05-01T00:00:00Z") };
  const base = createTestContext({ clock });
  const memory = createMemory({
    kv: new MemoryKv("MEM"),
    config: base.config,
    clock,
    events: base.events,
    providers: {} as Providers,
    log: silentLogger,
  });
  const personas = createPersonas({ kv: new MemoryKv("PERSONAS"), selections: memory.selections, config: defaultConfig(), log: silentLogger });
  return Object.assign(base, { memory, personas });
}

/** The error code a call rejects with (fails the test when it resolves). */
const codeOf = async (p: Promise<unknown>): Promise<string> => (await rejectionOf(p, isRoseyError)).code;

describe("rosey.llm.memory.add / recall / forget", () => {
  it("adds with defaults, recalls by relevance and publishes memory events", async () => {
    const c = ctx();
    const added = await add.handle(add.request.parse({ channel: "#c", content: "Nina loves sushi" }), c);
    expect(MemoryResponse.parse(added)).toMatchObject({ success: true, count: 1, memories: ["Nina loves sushi"] });
    expect(added.items![0]).toMatchObject({ category: "fact", importance: 1, user_id: null });
    await add.handle(add.request.parse({ channel: "#c", content: "Oscar hates rain", user_id: "oscar", importance: 3 }), c);

    const got = await recall.handle(recall.request.parse({ channel: "#c", query: "what food does nina love" }), c);
    expect(got).toMatchObject({ success: true, count: 1, memories: ["Nina loves sushi"] });
    expect(got.items![0].id).toBe(added.items![0].id);
    // Each content travels once: in memories, not again in items.
    expect(got.items![0]).not.toHaveProperty("content");
    expect(got.truncated).toBeUndefined();

    expect(c.recorded.map((e) => [e.name, e.payload])).toEqual([
      ["memory", { channel: "#c", action: "add", user_id: null, memory_count: 1 }],
      ["memory", { channel: "#c", action: "add", user_id: "oscar", memory_count: 1 }],
      ["memory", { channel: "#c", action: "recall", user_id: null, memory_count: 1 }],
    ]);
  });

  it("forgets by id, all of a user's, and answers not_found for an unknown id", async () => {
    const c = ctx();
    const a = await add.handle(add.request.parse({ channel: "#c", content: "Pat's cat is Tom", user_id: "pat" }), c);
    await add.handle(add.request.parse({ channel: "#c", content: "Pat's dog is Rex", user_id: "pat" }), c);
    expect(await forget.handle(forget.request.parse({ channel: "#c", id: a.items![0].id }), c)).toEqual({
      success: true,
      memories: [],
      count: 1,
    });
    expect(await codeOf(forget.handle(forget.request.parse({ channel: "#c", id: a.items![0].id }), c))).toBe("not_found");
    expect((await forget.handle(forget.request.parse({ channel: "#c", user_id: "pat" }), c)).count).toBe(1);
    expect(c.recorded.at(-1)!.payload).toEqual({ channel: "#c", action: "forget", user_id: "pat", memory_count: 1 });
  });

  it("returns as many memories as fit in the connection's max_payload, and says so", async () => {
    const c = ctx();
    for (let i = 0; i < 5; i++) await add.handle(add.request.parse({ channel: "#big", content: `tea note ${i} ${"x".repeat(900)}` }), c);
    const all = await recall.handle(recall.request.parse({ channel: "#big", query: "tea note", limit: 5 }), c);
    expect(all).toMatchObject({ count: 5 });
    c.maxPayload = 4 * 1024 + 2_500; // room for two memories of ~1 KB after the reserve
    const some = await recall.handle(recall.request.parse({ channel: "#big", query: "tea note", limit: 5 }), c);
    expect(some).toMatchObject({ success: true, count: 2, truncated: true });
    expect(some.memories).toEqual(all.memories!.slice(0, 2));
    expect(some.items).toHaveLength(2);
  });

  it("rejects a forget without id or user_id", () => {
    expect(MemoryForgetRequest.safeParse({ channel: "#c" }).success).toBe(false);
  });
});

describe("rosey.llm.admin.context.reset", () => {
  it("drops history but keeps memories", async () => {
    const c = ctx();
    await c.memory.record("#r", "quinn", "hello", "hi quinn");
    await add.handle(add.request.parse({ channel: "#r", content: "Quinn likes chess" }), c);
    expect(await reset.handle(reset.request.parse({ channel: "#r" }), c)).toEqual({ success: true });
    const messages = await c.memory.context("#r", "quinn", "chess?", await c.personas.forChannel("#r"));
    expect(storedData(messages)).toEqual({ index: 1, summaries: [], facts: [{ about: null, text: "Quinn likes chess" }] });
    expect(messages.slice(2).map((m) => m.content)).toEqual(["quinn: chess?"]);
  });
});

describe("rosey.llm.persona.*", () => {
  it("selects, gets and lists personas", async () => {
    const c = ctx();
    expect((await personaGet.handle(personaGet.request.parse({ channel: "#p" }), c)).persona!.name).toBe("default");
    const sel = await personaSet.handle(PersonaSetRequest.parse({ channel: "#p", persona: "concise" }), c);
    expect(PersonaResponse.parse(sel)).toMatchObject({ success: true, persona: { name: "concise" } });
    expect((await personaGet.handle(personaGet.request.parse({ channel: "#p" }), c)).persona!.name).toBe("concise");

    const def = await personaDefine.handle(PersonaDefineRequest.parse({ name: "poet", system_prompt: "Answer in haiku.", owner: "ops" }), c);
    expect(def.persona).toEqual({ name: "poet", description: "", system_prompt: "Answer in haiku.", builtin: false, owner: "ops" });
    const list = await personaList.handle({}, c);
    expect(list.personas!.map((p) => p.name)).toEqual(["default", "concise", "technical", "creative", "poet"]);
  });

  it("pages the list so every page fits the connection's max_payload", async () => {
    const c = ctx();
    for (let i = 0; i < 12; i++) {
      await personaDefine.handle(PersonaDefineRequest.parse({ name: `p${String(i).padStart(2, "0")}`, system_prompt: "\u0001".repeat(1_000) }), c);
    }
    const whole = (await personaList.handle({}, c)).personas!.map((p) => p.name);
    expect(whole).toHaveLength(16);
    c.maxPayload = 4 * 1024 + 20_000;
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await personaList.handle(personaList.request.parse(cursor === undefined ? {} : { cursor }), c);
      expect(JSON.stringify(page).length).toBeLessThan(c.maxPayload);
      seen.push(...page.personas!.map((p) => p.name));
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== undefined && pages < 20);
    expect(pages).toBeGreaterThan(1);
    expect(seen).toEqual(whole);
  });

  it("answers not_found for an unknown persona and validation for redefining a built-in", async () => {
    const c = ctx();
    expect(await codeOf(personaSet.handle(PersonaSetRequest.parse({ channel: "#p", persona: "ghost" }), c))).toBe("not_found");
    expect(await codeOf(personaDefine.handle(PersonaDefineRequest.parse({ name: "technical", system_prompt: "x" }), c))).toBe(
      "validation",
    );
  });
});
