// Long-term memories over the in-memory bucket: ranking, scope, dedupe, caps, decay, forget.
import { describe, expect, it } from "vitest";
import { defaultConfig } from "../lib/config";
import type { Events, Providers } from "../lib/context";
import { getJson, MemoryKv } from "../lib/kv";
import { silentLogger } from "../lib/log";
import { createMemory, jaccard, dedupeKey, stem, terms } from "../lib/memory";
import type { Memory } from "../lib/schemas";

const DAY = 86_400_000;
const noProviders = {} as Providers;
const noEvents: Events = { emit: () => "x", flush: async () => {} };

function setup(memory: Record<string, number> = {}, kv = new MemoryKv("MEM")) {
  let t = Date.parse("2025-03-01T12:00:00Z");
  const clock = { now: () => t };
  const mem = createMemory({
    kv,
    config: defaultConfig({ memory: memory as never }),
    clock,
    events: noEvents,
    providers: noProviders,
    log: silentLogger,
  });
  const add = (content: string, extra: { user_id?: string; importance?: number; channel?: string } = {}) =>
    mem.add({ channel: extra.channel ?? "#c", content, category: "fact", importance: extra.importance ?? 1, user_id: extra.user_id });
  const recall = async (query: string, user_id?: string, limit = 5) =>
    (await mem.recall({ channel: "#c", query, user_id, limit })).map((m) => m.content);
  return { mem, kv, add, recall, advance: (ms: number) => (t += ms), now: () => t };
}

const FACTS = [
  "Alice's favourite drink is green tea",
  "Bob is allergic to peanuts",
  "Movie night is on Fridays at 8pm",
  "Carol plays the cello in the city orchestra",
  "Dave is learning Rust for systems programming",
  "The server moved to a new host in March",
  "Erin runs the weekly trivia game",
];

describe("text analysis", () => {
  it("folds inflections onto one stem and drops stop words", () => {
    expect(new Set(["like", "likes", "liked", "liking"].map(stem))).toEqual(new Set(["lik"]));
    expect(stem("parties")).toBe(stem("party"));
    expect(stem("running")).toBe("run");
    expect(terms("What is the name of Alice's cat?")).toEqual(["nam", "alic", "cat"]);
  });

  it("treats 'likes tea' and 'does not like tea' as different", () => {
    expect(jaccard(dedupeKey("Bob likes tea"), dedupeKey("Bob does not like tea"))).toBeLessThan(0.9);
  });
});

describe("recall ranking", () => {
  it("finds the relevant fact for each query", async () => {
    const { add, recall } = setup();
    for (const f of FACTS) await add(f);
    expect((await recall("what does alice like to drink?"))[0]).toBe(FACTS[0]);
    expect((await recall("any peanut allergies?"))[0]).toBe(FACTS[1]);
    expect((await recall("when is movie night"))[0]).toBe(FACTS[2]);
    expect((await recall("who plays cello"))[0]).toBe(FACTS[3]);
    expect((await recall("who is learning programming"))[0]).toBe(FACTS[4]);
    expect((await recall("who runs trivia games?"))[0]).toBe(FACTS[6]);
  });

  it("returns only memories that share a word with the query", async () => {
    const { add, recall } = setup();
    for (const f of FACTS) await add(f);
    expect(await recall("quantum chromodynamics")).toEqual([]);
  });

  it("ranks relevance above recency", async () => {
    const { add, recall, advance } = setup();
    await add("Bob is allergic to peanuts and shellfish");
    advance(DAY);
    await add("Bob went to the park");
    advance(DAY);
    await add("Bob likes the color blue");
    const got = await recall("is bob allergic to peanuts");
    expect(got).toHaveLength(3);
    expect(got[0]).toBe("Bob is allergic to peanuts and shellfish");
  });

  it("breaks relevance ties by importance, then by recency", async () => {
    const { add, recall, advance } = setup();
    await add("Eve likes jazz", { importance: 1 });
    advance(1000);
    await add("Eve likes rock", { importance: 3 });
    advance(1000);
    await add("Eve likes funk", { importance: 1 });
    // No word of the query relates to one of them more than the others ("music" would: WordNet files jazz under it).
    expect(await recall("what does eve like")).toEqual(["Eve likes rock", "Eve likes funk", "Eve likes jazz"]);
  });

  it("rates a rare word above a common one", async () => {
    const { add, recall } = setup();
    for (let i = 0; i < 20; i++) await add(`channel note number ${i} about the channel`);
    await add("the channel mascot is a capybara");
    expect((await recall("channel capybara"))[0]).toBe("the channel mascot is a capybara");
  });

  it("answers a query of only stop words with the most important memories", async () => {
    const { add, recall } = setup();
    await add("low", { importance: 1 });
    await add("high", { importance: 5 });
    expect(await recall("what do you remember?", undefined, 1)).toEqual(["high"]);
  });

  it("stays fast to query with 10,000 memories and honours the limit", async () => {
    const { add, recall } = setup({ max_memories_per_channel: 20_000 });
    for (let i = 0; i < 10_000; i++) await add(`fact ${i}: user${i % 97} likes topic${i % 113}`);
    const got = await recall("who likes topic7", undefined, 10);
    expect(got).toHaveLength(10);
    for (const g of got) expect(g).toMatch(/topic7$/);
  });
});

describe("scope", () => {
  it("shows a user's memories only to that user and channel-wide ones to all", async () => {
    const { add, recall } = setup();
    await add("The secret password hint is 'penguin'", { user_id: "alice" });
    await add("The channel password hint is in the topic");
    expect(await recall("password hint", "alice")).toHaveLength(2);
    expect(await recall("password hint", "bob")).toEqual(["The channel password hint is in the topic"]);
    expect(await recall("password hint")).toEqual(["The channel password hint is in the topic"]);
  });

  it("keeps channels apart", async () => {
    const { add, mem } = setup();
    await add("Pizza on Tuesdays", { channel: "#a" });
    expect(await mem.recall({ channel: "#b", query: "pizza", limit: 5 })).toEqual([]);
  });
});

describe("adding", () => {
  it("gives ids and timestamps and stores the memory in the bucket", async () => {
    const { add, kv } = setup();
    const m = await add("Frank is the moderator", { user_id: "frank", importance: 4 });
    expect(m).toMatchObject({ channel: "#c", user_id: "frank", category: "fact", importance: 4, created_at: "2025-03-01T12:00:00.000Z" });
    expect(m.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const keys = await kv.keys("m.>");
    expect(keys).toHaveLength(1);
    expect((await getJson<Memory>(kv, keys[0]))!.value).toEqual(m);
  });

  it("refreshes a near-identical memory in the same scope instead of duplicating it", async () => {
    const { add, kv, advance } = setup();
    const first = await add("Alice likes green tea.", { importance: 2 });
    advance(DAY);
    const again = await add("alice LIKES green tea", { importance: 1 });
    expect(again.id).toBe(first.id);
    expect(again.importance).toBe(2);
    expect(again.last_accessed).not.toBe(first.last_accessed);
    const long = "The weekly trivia night starts at nine in the evening on Thursday in the lounge";
    const a = await add(long);
    const b = await add(long.replace("weekly", "weekly, fun"));
    expect(b.id).toBe(a.id);
    expect(b.content).toBe(long);
    expect(await kv.keys("m.>")).toHaveLength(2);
  });

  it("keeps different facts and different scopes apart", async () => {
    const { add, kv } = setup();
    await add("Bob likes tea");
    await add("Bob does not like tea");
    await add("Bob likes tea", { user_id: "bob" });
    expect(await kv.keys("m.>")).toHaveLength(3);
  });

  it("dedupes the same fact added by two instances at once", async () => {
    const kv = new MemoryKv("MEM");
    const a = setup({}, kv);
    const b = setup({}, kv);
    const [x, y] = await Promise.all([a.add("Grace hosts the podcast", { importance: 2 }), b.add("grace hosts the podcast!", { importance: 4 })]);
    expect(x.id).toBe(y.id);
    expect(await kv.keys("m.>")).toHaveLength(1);
    expect((await getJson<Memory>(kv, (await kv.keys("m.>"))[0]))!.value.importance).toBe(4);
  });

  it("evicts the least important, least recently used memories above the cap", async () => {
    const { add, recall, advance, mem } = setup({ max_memories_per_channel: 3 });
    await add("alpha topic", { importance: 1 });
    advance(1000);
    await add("beta topic", { importance: 5 });
    advance(1000);
    await add("gamma topic", { importance: 1 });
    advance(1000);
    await add("delta topic", { importance: 2 }); // alpha goes: importance 1 and oldest
    advance(1000);
    await add("epsilon topic", { importance: 1 }); // gamma goes; the new one stays
    await mem.settled();
    expect((await recall("topic", undefined, 10)).sort()).toEqual(["beta topic", "delta topic", "epsilon topic"]);
  });
});

describe("use and decay", () => {
  it("touches last_accessed on recall", async () => {
    const { add, mem, kv, advance, now } = setup();
    const m = await add("Heidi collects stamps");
    advance(3 * DAY);
    const [got] = await mem.recall({ channel: "#c", query: "stamps", limit: 1 });
    expect(got.last_accessed).toBe(new Date(now()).toISOString());
    await mem.settled();
    const stored = (await getJson<Memory>(kv, (await kv.keys("m.>"))[0]))!.value;
    expect(stored.last_accessed).toBe(new Date(now()).toISOString());
    expect(stored.created_at).toBe(m.created_at);
  });

  it("drops memories not used for decay_days, keeps those in use", async () => {
    const { add, recall, advance, mem, kv } = setup({ decay_days: 10 });
    await add("Ivan speaks Finnish");
    await add("Judy speaks Welsh");
    advance(6 * DAY);
    expect(await recall("welsh")).toEqual(["Judy speaks Welsh"]); // touches Judy only
    advance(6 * DAY); // Ivan: 12 days unused; Judy: 6
    expect(await recall("who speaks finnish or welsh")).toEqual(["Judy speaks Welsh"]);
    await mem.settled();
    expect(await kv.keys("m.>")).toHaveLength(1);
  });
});

describe("forget", () => {
  it("forgets one memory by id, only for its owner when a user is given", async () => {
    const { add, mem, recall } = setup();
    const m = await add("Karl's birthday is in May", { user_id: "karl" });
    expect(await mem.forget({ channel: "#c", id: m.id, user_id: "mallory" })).toBe(0);
    expect(await mem.forget({ channel: "#c", id: "no-such-id" })).toBe(0);
    expect(await mem.forget({ channel: "#c", id: m.id, user_id: "karl" })).toBe(1);
    expect(await recall("birthday", "karl")).toEqual([]);
  });

  it("forgets all of a user's memories and nothing else", async () => {
    const { add, mem, kv } = setup();
    await add("Liam likes cats", { user_id: "liam" });
    await add("Liam likes dogs", { user_id: "liam" });
    await add("Channel rule: be kind");
    await add("Mia likes birds", { user_id: "mia" });
    expect(await mem.forget({ channel: "#c", user_id: "liam" })).toBe(2);
    expect(await kv.keys("m.>")).toHaveLength(2);
  });
});
