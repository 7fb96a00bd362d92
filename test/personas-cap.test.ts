// The cap on defined personas (ROSEY_PERSONAS_MAX_DEFINED) over NATS, on two instances:
// exact under racing defines, updates and deletions free of it, and a place counted for a
// definition that never came back in use after a minute; and the count's edge cases over an
// in-memory bucket.
import type { NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryKv } from "../lib/kv";
import { BUCKETS } from "../runtime/provision";
import { client, request, startInstance, type TestInstance } from "./helpers/service";
import { startTestServer, type TestServer } from "./helpers/nats";
import { personasOver } from "./helpers/memory-context";

const MAX = 5;

describe("defined personas are capped across instances", () => {
  let srv: TestServer;
  const instances: TestInstance[] = [];
  let nc: NatsConnection;
  // Both instances' clock, moved by the last test.
  let offset = 0;
  const clock = { now: () => Date.now() + offset };

  beforeAll(async () => {
    srv = await startTestServer();
    for (let i = 0; i < 2; i++) instances.push(await startInstance(srv.url, { storage: { personas_max_defined: MAX } as never }, { clock }));
    nc = await client(srv.url);
  });
  afterAll(async () => {
    await nc?.close();
    await Promise.all(instances.map((i) => i.stop()));
    await srv?.cleanup();
  });

  const define = (name: string, prompt = `You are ${name}.`) =>
    request(nc, "rosey.llm.admin.persona.define", { name, description: name, system_prompt: prompt });
  const defined = async () => {
    const r = await request(nc, "rosey.llm.persona.list", {});
    return (r.body.personas as Array<{ name: string; builtin: boolean }>).filter((p) => !p.builtin).map((p) => p.name).sort();
  };

  it("lets exactly the cap in when more define at once, and refuses the rest with storage_full", async () => {
    const names = Array.from({ length: 12 }, (_, i) => `p${i}`);
    const replies = await Promise.all(names.map((n) => define(n)));
    const ok = names.filter((_, i) => replies[i].body.success);
    expect(ok).toHaveLength(MAX);
    for (const r of replies.filter((r) => !r.body.success)) {
      expect(r.body.error_code).toBe("storage_full");
      expect(r.code).toBe("507");
      expect(r.body.error).toMatch(/ROSEY_PERSONAS_MAX_DEFINED/);
    }
    expect(await defined()).toEqual(ok.sort());
  });

  it("still updates a defined persona at the cap, and a deletion frees a place", async () => {
    const [first, second] = await defined();
    const updated = await define(first, "Changed.");
    expect(updated.body).toMatchObject({ success: true, persona: { name: first, system_prompt: "Changed." } });
    expect((await define("newcomer")).body.error_code).toBe("storage_full");
    expect((await request(nc, "rosey.llm.admin.persona.delete", { name: second })).body.success).toBe(true);
    expect((await define("newcomer")).body.success).toBe(true);
    expect((await define("another")).body.error_code).toBe("storage_full");
    expect(await defined()).toHaveLength(MAX);
  });

  it("gives back, after a minute, a place counted for a definition that was never written", async () => {
    const [victim] = await defined();
    expect((await request(nc, "rosey.llm.admin.persona.delete", { name: victim })).body.success).toBe(true);
    // A define that died between counting its name and writing it.
    const kv = await nc.jetstream().views.kv(BUCKETS.personas);
    const index = JSON.parse(new TextDecoder().decode((await kv.get("index"))!.value));
    await kv.put("index", new TextEncoder().encode(JSON.stringify({ names: { ...index.names, ghost: clock.now() } })));
    expect((await define("late")).body.error_code).toBe("storage_full");
    offset += 61_000;
    expect((await define("late")).body.success).toBe(true);
    expect(await defined()).toHaveLength(MAX);
  });
});

describe("the persona count over an in-memory bucket", () => {
  const setup = (max: number, kv = new MemoryKv("PERSONAS")) => ({
    kv,
    personas: personasOver(kv, { config: { storage: { personas_max_defined: max } as never } }).personas,
  });
  const persona = (name: string) => ({ name, description: "", system_prompt: `I am ${name}.` });

  it("counts names that are also object properties like any other", async () => {
    const { personas } = setup(3);
    for (const n of ["constructor", "valueof", "tostring"]) await personas.define(persona(n));
    await expect(personas.define(persona("hasownproperty"))).rejects.toMatchObject({ code: "storage_full" });
    expect((await personas.list()).filter((p) => !p.builtin).map((p) => p.name).sort()).toEqual(["constructor", "tostring", "valueof"]);
  });

  it("counts definitions stored before the count existed, and rebuilds a malformed count", async () => {
    const { kv, personas } = setup(2);
    await kv.put("def.older", new TextEncoder().encode(JSON.stringify(persona("older"))));
    await personas.define(persona("newer"));
    await expect(personas.define(persona("third"))).rejects.toMatchObject({ code: "storage_full" });
    await kv.put("index", new TextEncoder().encode("not json"));
    await expect(setup(2, kv).personas.define(persona("third"))).rejects.toMatchObject({ code: "storage_full" });
    await personas.remove("older");
    await personas.define(persona("third"));
  });
});
