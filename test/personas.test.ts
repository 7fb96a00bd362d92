// Personas over the in-memory bucket: built-ins, operator personas, defined ones, selection.
import { describe, expect, it } from "vitest";
import { isRoseyError } from "../lib/errors";
import { encodeName } from "../lib/keys";
import { MemoryKv } from "../lib/kv";
import type { Logger } from "../lib/context";
import { createLogger, silentLogger } from "../lib/log";
import { BUILTIN_PERSONAS } from "../lib/personas";
import { rejectionOf } from "./helpers/assert";
import { personasOver } from "./helpers/memory-context";

/** Personas over a personas bucket and a memory bucket (new ones unless given). */
function setup(personas: Record<string, unknown> = {}, kv = new MemoryKv("PERSONAS"), memory = new MemoryKv("MEMORY")) {
  return { kv, memory, personas: personasOver(kv, { memory, config: { personas: personas as never } }).personas };
}

/** The error code a call rejects with (fails the test when it resolves). */
const codeOf = async (p: Promise<unknown>): Promise<string> => (await rejectionOf(p, isRoseyError)).code;

describe("personas", () => {
  it("gives every channel the default persona until it selects one", async () => {
    const { personas } = setup();
    expect(await personas.forChannel("#new")).toEqual(BUILTIN_PERSONAS[0]);
  });

  it("lists the built-ins first, then operator and defined personas by name", async () => {
    const { personas } = setup({ pirate: { description: "Arr", system_prompt: "Talk like a pirate." } });
    await personas.define({ name: "zen", description: "", system_prompt: "Be calm." });
    await personas.define({ name: "bard", description: "Rhymes", system_prompt: "Answer in verse.", temperature: 1.2 });
    const list = await personas.list();
    expect(list.map((p) => p.name)).toEqual(["default", "concise", "technical", "creative", "bard", "pirate", "zen"]);
    expect(list.find((p) => p.name === "bard")).toEqual({
      name: "bard",
      description: "Rhymes",
      system_prompt: "Answer in verse.",
      temperature: 1.2,
      builtin: false,
    });
    expect(list.find((p) => p.name === "pirate")?.builtin).toBe(true);
  });

  it("selects a persona per channel, with names that are not key-safe", async () => {
    const { personas } = setup();
    await personas.select("#a.b *>", "technical");
    expect((await personas.forChannel("#a.b *>")).name).toBe("technical");
    expect((await personas.forChannel("#a.b")).name).toBe("default");
  });

  it("lets a request override the channel's persona", async () => {
    const { personas } = setup();
    await personas.select("#x", "concise");
    expect((await personas.forChannel("#x", "creative")).name).toBe("creative");
  });

  it("updates a defined persona in place", async () => {
    const { personas } = setup();
    await personas.define({ name: "guide", description: "v1", system_prompt: "one" });
    await personas.select("#g", "guide");
    await personas.define({ name: "guide", description: "v2", system_prompt: "two", temperature: 0.1 });
    expect(await personas.forChannel("#g")).toMatchObject({ description: "v2", system_prompt: "two", temperature: 0.1 });
  });

  it("refuses unknown personas with not_found", async () => {
    const { personas } = setup();
    expect(await codeOf(personas.select("#c", "nobody"))).toBe("not_found");
    expect(await codeOf(personas.forChannel("#c", "nobody"))).toBe("not_found");
    expect(await personas.get("nobody")).toBeNull();
    expect(await personas.get("Not A Name")).toBeNull();
  });

  it("refuses to redefine a built-in or operator persona", async () => {
    const { personas } = setup({ pirate: { description: "Arr", system_prompt: "Talk like a pirate." } });
    expect(await codeOf(personas.define({ name: "default", description: "", system_prompt: "x" }))).toBe("validation");
    expect(await codeOf(personas.define({ name: "pirate", description: "", system_prompt: "x" }))).toBe("validation");
    expect((await personas.get("default"))?.system_prompt).toBe(BUILTIN_PERSONAS[0].system_prompt);
  });

  it("lets the operator configuration replace a built-in's prompt", async () => {
    const { personas } = setup({ default: { description: "House style", system_prompt: "You are Rosey of #house." } });
    expect(await personas.forChannel("#c")).toMatchObject({ name: "default", system_prompt: "You are Rosey of #house.", builtin: true });
  });

  it("falls back to the default when a selected operator persona was removed", async () => {
    const kv = new MemoryKv("PERSONAS");
    const memory = new MemoryKv("MEMORY");
    await setup({ pirate: { description: "Arr", system_prompt: "Arr." } }, kv, memory).personas.select("#p", "pirate");
    expect((await setup({}, kv, memory).personas.forChannel("#p")).name).toBe("default");
  });

  it("shares definitions and selections between instances on one bucket", async () => {
    const kv = new MemoryKv("PERSONAS");
    const memory = new MemoryKv("MEMORY");
    const a = setup({}, kv, memory).personas;
    const b = setup({}, kv, memory).personas;
    await a.define({ name: "teacher", description: "Explains", system_prompt: "Explain step by step." });
    await a.select("#class", "teacher");
    expect(await b.forChannel("#class")).toMatchObject({ name: "teacher", system_prompt: "Explain step by step." });
  });
});

const create = (kv: MemoryKv, memory: MemoryKv, log: Logger = silentLogger) => personasOver(kv, { memory, log }).personas;

describe("personas read from the bucket on use", () => {
  it("needs no KV read for a built-in persona, by name or as an override", async () => {
    const { kv, memory, personas } = setup();
    const reads = () => [kv, memory].reduce((n, b) => n + b.ops.snapshot + b.ops.changes + b.ops.get, 0);
    const before = reads();
    expect((await personas.get("concise"))?.name).toBe("concise");
    expect((await personas.forChannel("#x", "technical")).name).toBe("technical");
    expect(reads()).toBe(before);
  });

  it("reads a channel's selection with the channel's memory, and the personas bucket only for a defined persona", async () => {
    const { kv, memory, personas } = setup();
    await personas.move.step();
    await personas.define({ name: "guide", description: "", system_prompt: "Guide." });
    await personas.select("#fixed", "technical");
    await personas.select("#defined", "guide");
    const before = { personas: kv.ops.snapshot + kv.ops.changes + kv.ops.get, memory: memory.ops.snapshot + memory.ops.changes };
    expect((await personas.forChannel("#fixed")).name).toBe("technical");
    expect(kv.ops.snapshot + kv.ops.changes + kv.ops.get).toBe(before.personas);
    expect((await personas.forChannel("#defined")).name).toBe("guide");
    expect(kv.ops.snapshot + kv.ops.changes + kv.ops.get).toBe(before.personas + 1);
    expect(memory.ops.snapshot + memory.ops.changes).toBe(before.memory + 2);
  });

  it("keeps the selection of a channel in use; one unused for ROSEY_HISTORY_TTL_DAYS goes back to the default", async () => {
    let now = Date.parse("2025-01-01T00:00:00Z");
    const clock = { now: () => now };
    const memory = new MemoryKv("MEMORY", clock);
    const a = personasOver(new MemoryKv("PERSONAS", clock), { memory, clock });
    await a.personas.select("#used", "concise");
    await a.personas.select("#idle", "technical");
    for (let day = 1; day <= 40; day++) {
      now += 86_400_000;
      expect((await a.personas.forChannel("#used")).name, `day ${day}`).toBe("concise");
      await a.memory.settled();
    }
    expect((await a.personas.forChannel("#idle")).name).toBe("default");
    // Kept by rewriting it, never in place of a selection made meanwhile: another instance's
    // writes are held until after a new selection.
    now += 10 * 86_400_000;
    let release!: () => void;
    const late = new Promise<void>((r) => (release = r));
    const held = new Proxy(memory, {
      get: (t, k: keyof MemoryKv) =>
        typeof t[k] !== "function" ? t[k] : ["put", "create", "update"].includes(k) ? async (...args: never[]) => (await late, (t[k] as (...a: never[]) => unknown)(...args)) : (t[k] as () => unknown).bind(t),
    });
    const b = personasOver(new MemoryKv("PERSONAS", clock), { memory: held, clock });
    expect((await b.personas.forChannel("#used")).name).toBe("concise");
    await a.personas.select("#used", "creative");
    release();
    await b.memory.settled();
    expect((await b.personas.forChannel("#used")).name).toBe("creative");
  });

  it("sees a selection or definition made on another instance on its very next read", async () => {
    const kv = new MemoryKv("PERSONAS");
    const memory = new MemoryKv("MEMORY");
    const a = create(kv, memory);
    const b = create(kv, memory);
    expect((await b.forChannel("#ship")).name).toBe("default");
    await b.select("#ship", "concise");
    expect((await b.forChannel("#ship")).name).toBe("concise");
    await a.define({ name: "pirate", description: "", system_prompt: "Arr." });
    await a.select("#ship", "pirate");
    expect(await b.forChannel("#ship")).toMatchObject({ name: "pirate", system_prompt: "Arr." });
    await a.define({ name: "pirate", description: "", system_prompt: "Arr, matey." });
    expect((await b.forChannel("#ship")).system_prompt).toBe("Arr, matey.");
    expect((await b.list()).map((p) => p.name)).toContain("pirate");
    expect(await b.select("#inn", "pirate")).toMatchObject({ name: "pirate" });
  });

  it("stores definitions and their count in the personas bucket, a selection with its channel's memory", async () => {
    const { kv, memory, personas } = setup();
    await personas.define({ name: "teacher", description: "", system_prompt: "Teach." });
    await personas.select("#old", "teacher");
    await personas.forChannel("#other");
    expect((await kv.keys()).sort()).toEqual(["def.teacher", "index"]);
    expect(await memory.keys()).toEqual([`p.${encodeName("#old")}.sel`]);
  });

  it("skips a malformed stored definition or selection with a log line naming the key", async () => {
    const kv = new MemoryKv("PERSONAS");
    const memory = new MemoryKv("MEMORY");
    const lines: string[] = [];
    const personas = create(kv, memory, createLogger("warn", {}, (l) => lines.push(l)));
    await personas.define({ name: "good", description: "", system_prompt: "Fine." });
    const secret = "do-not-print-me";
    await kv.put("def.broken", new TextEncoder().encode(`{"name": "broken", ${secret}`));
    await memory.put(`p.${encodeName("#bad")}.sel`, new TextEncoder().encode(JSON.stringify({ chosen: secret })));
    await kv.put(`sel.${encodeName("#old")}`, new TextEncoder().encode(secret));
    expect((await personas.list()).map((p) => p.name)).toContain("good");
    expect(await personas.get("broken")).toBeNull();
    expect((await personas.forChannel("#bad")).name).toBe("default");
    expect((await personas.forChannel("#old")).name).toBe("default");
    const skipped = lines.map((l) => JSON.parse(l)).filter((l) => /unreadable entry skipped/.test(l.msg));
    expect(skipped.map((l) => `${l.msg} ${l.key}`).sort()).toEqual([
      `memory: unreadable entry skipped p.${encodeName("#bad")}.sel`,
      "persona: unreadable entry skipped def.broken",
      `persona: unreadable entry skipped sel.${encodeName("#old")}`,
    ]);
    expect(lines.join("\n")).not.toContain(secret);
  });
});
