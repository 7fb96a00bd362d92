// Validation messages name the field and what was expected — for a union too, where they
// say which form the request was meant for. Pure tests of the formatter over every union in
// lib/schemas, then the same messages from a running service over NATS.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import * as schemas from "../lib/schemas";
import { describeIssues } from "../lib/schemas/issues";
import { endpointSubject } from "../lib/subjects";
import { request, useService } from "./helpers/service";

/** The message the service would give for `input`. */
const message = (schema: z.ZodType, input: unknown) => {
  const r = schema.safeParse(input);
  if (r.success) throw new Error(`expected ${JSON.stringify(input)} to be refused`);
  return describeIssues(schema, input, r.error.issues);
};

type Def = { type: string; shape?: Record<string, z.ZodType>; options?: z.ZodType[]; innerType?: z.ZodType; element?: z.ZodType };
const defOf = (s: z.ZodType) => (s as unknown as { _zod: { def: Def } })._zod.def;

/** Every union reachable from the exported schemas, with where it was found. */
function unions(): Array<[string, z.ZodType]> {
  const found = new Map<z.ZodType, string>();
  const walk = (s: z.ZodType | undefined, where: string, seen: Set<z.ZodType>) => {
    if (!s || seen.has(s)) return;
    seen.add(s);
    const d = defOf(s);
    if (d.type === "union" && !found.has(s)) found.set(s, where);
    for (const [k, v] of Object.entries(d.shape ?? {})) walk(v, `${where}.${k}`, seen);
    for (const o of d.options ?? []) walk(o, where, seen);
    walk(d.innerType, where, seen);
    walk(d.element, `${where}[]`, seen);
  };
  for (const [name, s] of Object.entries(schemas)) {
    if (s && typeof s === "object" && "_zod" in s) walk(s as z.ZodType, name, new Set());
  }
  return [...found].map(([s, where]) => [where, s]);
}

/** A union of two titled request forms, as a request accepting either would declare it. */
const Forms = z.union([
  z.strictObject({ channel: schemas.Name, persona: schemas.PersonaName }).meta({ title: "select" }),
  z.strictObject({ name: schemas.PersonaName, system_prompt: z.string().min(1), description: z.string().optional(), temperature: schemas.Temperature.optional() }).meta({ title: "define" }),
]);

describe("describeIssues", () => {
  it("says which form of a union was meant and what its field expected", () => {
    expect(message(Forms, { channel: "#x", persona: 5 })).toBe(
      "persona: expected string, received number (select form {channel, persona})",
    );
    expect(message(Forms, { name: "pirate", description: "arr" })).toBe(
      "system_prompt: required (define form {name, system_prompt, …})",
    );
    expect(message(Forms, { name: "pirate", system_prompt: "Arr", temperature: 9 })).toBe(
      "temperature: expected number to be <=2 (define form {name, system_prompt, …})",
    );
  });

  it("lists the forms when the request leans to neither", () => {
    const both = "expected select form {channel, persona} or define form {name, system_prompt, …}";
    expect(message(Forms, {})).toBe(both);
    expect(message(Forms, { channel: "#x", name: "y" })).toBe(both);
  });

  it("names an unknown field with the fields of the form it was sent with", () => {
    expect(message(Forms, { channel: "#x", persona: "concise", colour: "red" })).toBe(
      "colour: unknown field (select form fields: channel, persona)",
    );
    expect(message(schemas.ChatRequest, { channel: "#x", user: "u", message: "m", extra: 1 })).toBe(
      "extra: unknown field (fields: channel, user, message, persona, stream)",
    );
  });

  it("says required for a missing field and names nested paths", () => {
    expect(message(schemas.ChatRequest, { channel: "#x", user: "u" })).toBe("message: required");
    expect(message(schemas.CompleteRequest, { messages: [{ role: "robot", content: "x" }] })).toBe(
      'messages.0.role: expected one of "system"|"user"|"assistant"',
    );
  });

  it.each([...unions(), ["select | define", Forms] as [string, z.ZodType]])("%s: each titled form is chosen by its own keys and named", (_where, union) => {
    const branches = defOf(union).options!;
    for (const branch of branches) {
      const title = branch.meta()?.title;
      expect(title, "every union branch needs .meta({ title }) to be named in messages").toBeTruthy();
      const shape = defOf(branch).shape!;
      const field = Object.keys(shape).find((k) => !shape[k].safeParse(undefined).success)!;
      // The form's first required field, of a type no schema here accepts for a field.
      expect(message(union, { [field]: [[]] })).toMatch(new RegExp(`^${field}: .*\\(${title} form \\{`));
    }
  });

  it("finds a union below the top level and prefixes its path", () => {
    const A = z.strictObject({ x: z.number() }).meta({ title: "a" });
    const B = z.strictObject({ y: z.string() }).meta({ title: "b" });
    const s = z.strictObject({ target: z.union([A, B]) });
    expect(message(s, { target: { x: "no" } })).toBe("target.x: expected number, received string (a form {x})");
    expect(message(z.union([z.string(), z.number()]), true)).toBe("expected string or number");
  });

  it("names a discriminated union's tag and its options", () => {
    const s = z.discriminatedUnion("kind", [
      z.strictObject({ kind: z.literal("a") }),
      z.strictObject({ kind: z.literal("b") }),
    ]);
    expect(message(z.strictObject({ target: s }), { target: { kind: "c" } })).toBe('target.kind: expected one of "a" | "b"');
  });
});

describe("over NATS", () => {
  const svc = useService();

  it.each([
    [{ channel: "#x", persona: 5 }, "invalid request: persona: expected string, received number"],
    [{ name: "pirate", system_prompt: "Obey." }, "invalid request: channel: required; persona: required; name: unknown field (fields: channel, persona); system_prompt: unknown field (fields: channel, persona)"],
  ])("persona_set %j is refused naming the field", async (body, error) => {
    const r = await request(svc.nc, endpointSubject("rosey", "persona_set"), body);
    expect(r.body).toMatchObject({ success: false, error_code: "validation", error });
    expect(r.code).toBe("400");
    expect(r.description).toBe(error);
  });
});
