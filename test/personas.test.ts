// Personas over the in-memory bucket: built-ins, operator personas, defined ones, selection.
import { describe, expect, it } from "vitest";
import { defaultConfig } from "../lib/config";
import { isRoseyError } from "../lib/errors";
import { MemoryKv, type Kv } from "../lib/kv";
import { silentLogger } from "../lib/log";
import { BUILTIN_PERSONAS, createPersonas } from "../lib/personas";
import { rejectionOf } from "./helpers/assert";

/** Instance a on the bucket, instance b on a view of it whose watch can be held back. */
async function twoInstances() {
  const kv = new MemoryKv("PERSONAS");
  const slow = laggingKv(kv);
  const a = create(kv);
  const b = create(slow.bucket);
  await Promise.all([a.ready(), b.ready()]);
  return { kv, slow, a, b };
}

function setup(personas: Record<string, unknown> = {}, kv = new MemoryKv("PERSONAS")) {
  return { kv, personas: createPersonas({ kv, config: defaultConfig({ personas: personas as never }), log: silentLogger }) };
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
    await setup({ pirate: { description: "Arr", system_prompt: "Arr." } }, kv).personas.select("#p", "pirate");
    expect((await setup({}, kv).personas.forChannel("#p")).name).toBe("default");
  });

  it("shares definitions and selections between instances on one bucket", async () => {
    const kv = new MemoryKv("PERSONAS");
    const a = setup({}, kv).personas;
    const b = setup({}, kv).personas;
    await a.define({ name: "teacher", description: "Explains", system_prompt: "Explain step by step." });
    await a.select("#class", "teacher");
    expect(await b.forChannel("#class")).toMatchObject({ name: "teacher", system_prompt: "Explain step by step." });
  });
});

/** A bucket whose watch, once lag() is called, holds its deliveries until release(): a watch running behind. */
function laggingKv(kv: MemoryKv) {
  const held: Array<() => void> = [];
  let lagging = false;
  const bucket: Kv = {
    bucket: kv.bucket,
    get: (k) => kv.get(k),
    put: (k, v) => kv.put(k, v),
    create: (k, v) => kv.create(k, v),
    update: (k, v, r) => kv.update(k, v, r),
    delete: (k) => kv.delete(k),
    keys: (f) => kv.keys(f),
    watch: (filter, onChange) => kv.watch(filter, (k, e) => (lagging ? held.push(() => onChange(k, e)) : onChange(k, e))),
  };
  return {
    bucket,
    lag: () => (lagging = true),
    release: () => {
      lagging = false;
      held.splice(0).forEach((f) => f());
    },
  };
}

/** The bucket without a watch: every read goes to KV. */
function unwatched(kv: MemoryKv): Kv {
  return {
    bucket: kv.bucket,
    get: (k) => kv.get(k),
    put: (k, v) => kv.put(k, v),
    create: (k, v) => kv.create(k, v),
    update: (k, v, r) => kv.update(k, v, r),
    delete: (k) => kv.delete(k),
    keys: (f) => kv.keys(f),
  };
}

const create = (kv: Kv) => createPersonas({ kv, config: defaultConfig(), log: silentLogger });

describe("personas mirrored by a watch", () => {
  it("serves a channel's persona and the list without a KV read once ready", async () => {
    const { kv, personas } = setup();
    await personas.define({ name: "guide", description: "", system_prompt: "Guide." });
    await personas.select("#m", "guide");
    await personas.ready();
    const gets = kv.ops.get;
    const keys = kv.ops.keys;
    expect((await personas.forChannel("#m")).name).toBe("guide");
    expect((await personas.forChannel("#unset")).name).toBe("default");
    expect((await personas.list()).map((p) => p.name)).toContain("guide");
    expect(await personas.get("guide")).toMatchObject({ system_prompt: "Guide." });
    expect([kv.ops.get - gets, kv.ops.keys - keys]).toEqual([0, 0]);
  });

  it("loads what the bucket held before start and leaves no barrier key behind", async () => {
    const kv = new MemoryKv("PERSONAS");
    const a = setup({}, kv).personas;
    await a.define({ name: "teacher", description: "", system_prompt: "Teach." });
    await a.select("#old", "teacher");
    const b = setup({}, kv).personas;
    await b.ready();
    const gets = kv.ops.get;
    expect((await b.forChannel("#old")).name).toBe("teacher");
    expect(kv.ops.get).toBe(gets);
    await new Promise((r) => setImmediate(r));
    expect(await kv.keys("sync.>")).toEqual([]);
  });

  it("sees its own writes at once and another instance's once the watch delivers them", async () => {
    const { slow, a, b } = await twoInstances();
    slow.lag();
    await b.select("#ship", "concise");
    expect((await b.forChannel("#ship")).name).toBe("concise");
    await a.define({ name: "pirate", description: "", system_prompt: "Arr." });
    await a.select("#ship", "pirate");
    expect((await a.forChannel("#ship")).name).toBe("pirate");
    // b's watch has not delivered a's selection yet: b still answers with its own.
    expect((await b.forChannel("#ship")).name).toBe("concise");
    slow.release();
    expect(await b.forChannel("#ship")).toMatchObject({ name: "pirate", system_prompt: "Arr." });
    // b's own older write, delivered late by its watch, does not undo a's newer one.
    expect((await b.forChannel("#ship")).name).toBe("pirate");
  });

  it("finds a persona defined elsewhere that the watch has not delivered yet, before refusing it", async () => {
    const { slow, a, b } = await twoInstances();
    slow.lag();
    await a.define({ name: "bard", description: "", system_prompt: "Verse.", temperature: 1.1 });
    expect(await b.select("#inn", "bard")).toMatchObject({ name: "bard", temperature: 1.1 });
    expect(await b.forChannel("#inn")).toMatchObject({ name: "bard", system_prompt: "Verse." });
    expect((await b.list()).map((p) => p.name)).toContain("bard");
    expect(await b.get("nobody")).toBeNull();
  });

  it("sync() waits until the watch has delivered what other instances wrote before it", async () => {
    const { slow, a, b } = await twoInstances();
    slow.lag();
    await a.select("#s", "creative");
    let synced = false;
    const s = b.sync().then(() => (synced = true));
    await new Promise((r) => setTimeout(r, 5));
    expect(synced).toBe(false);
    slow.release();
    await s;
    expect((await b.forChannel("#s")).name).toBe("creative");
  });

  it("reads KV on every call when the bucket has no watch, and after close", async () => {
    const kv = new MemoryKv("PERSONAS");
    const a = create(unwatched(kv));
    const b = create(kv);
    await Promise.all([a.ready(), b.ready()]);
    await b.define({ name: "zen", description: "", system_prompt: "Calm." });
    await b.select("#z", "zen");
    const gets = kv.ops.get;
    expect((await a.forChannel("#z")).name).toBe("zen");
    expect(kv.ops.get - gets).toBe(2); // the selection, then the definition
    expect((await a.list()).map((p) => p.name)).toContain("zen");

    b.close();
    await a.select("#z", "technical");
    const before = kv.ops.get;
    expect((await b.forChannel("#z")).name).toBe("technical");
    expect(kv.ops.get).toBeGreaterThan(before);
  });
});
