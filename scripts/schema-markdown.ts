// JSON Schema → Markdown for docs/contract.md: a field table (name, type, required, default,
// constraints, description) with nested objects, arrays of objects and maps flattened into
// dotted names (`messages[].role`, `by_provider.<key>.tokens`), a table per form of a union,
// and the raw schema in a collapsible block.
import type { JsonSchema } from "../lib/schemas/json";

type S = JsonSchema & {
  type?: string | string[];
  properties?: Record<string, S>;
  required?: string[];
  items?: S;
  additionalProperties?: S | boolean;
  anyOf?: S[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  title?: string;
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minItems?: number;
  maxItems?: number;
};

/** Text safe inside a table cell. */
export const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ");
const code = (s: string) => "`" + s + "`";

/** The schema without a `| null` alternative, and whether null was allowed. */
function nonNull(s: S): { schema: S; nullable: boolean } {
  const alternatives = s.anyOf?.filter((a) => a.type !== "null");
  if (s.anyOf && alternatives?.length === 1 && alternatives.length < s.anyOf.length) {
    return { schema: { ...alternatives[0], description: s.description ?? alternatives[0].description }, nullable: true };
  }
  return { schema: s, nullable: false };
}

const isMap = (s: S) => s.type === "object" && !s.properties && typeof s.additionalProperties === "object";

function typeOf(s: S): string {
  if (s.anyOf) return s.anyOf.map(typeOf).join(" or ");
  if (Array.isArray(s.type)) return s.type.join(" or ");
  if (s.type === "array") return `${s.items ? typeOf(s.items) : "any"}[]`;
  if (isMap(s)) return `map of ${typeOf(s.additionalProperties as S)}`;
  return s.type ?? "any";
}

/** JavaScript's safe-integer bounds, which zod writes for every int(): not worth a word. */
const SAFE = Number.MAX_SAFE_INTEGER;

function range(min: number | undefined, max: number | undefined, unit = ""): string | undefined {
  const lo = min !== undefined && Math.abs(min) < SAFE ? min : undefined;
  const hi = max !== undefined && Math.abs(max) < SAFE ? max : undefined;
  if (lo !== undefined && hi !== undefined) return `${lo}–${hi}${unit}`;
  if (lo !== undefined) return `≥ ${lo}${unit}`;
  if (hi !== undefined) return `≤ ${hi}${unit}`;
  return undefined;
}

function constraints(s: S): string {
  const out: string[] = [];
  if (s.enum) out.push(`one of ${s.enum.map((v) => code(String(v))).join(", ")}`);
  if (s.const !== undefined) out.push(`always ${code(JSON.stringify(s.const))}`);
  const chars = range(s.minLength, s.maxLength, " characters");
  if (chars) out.push(chars);
  const value = range(s.minimum, s.maximum);
  if (value) out.push(value);
  if (s.exclusiveMinimum !== undefined) out.push(`> ${s.exclusiveMinimum}`);
  if (s.exclusiveMaximum !== undefined) out.push(`< ${s.exclusiveMaximum}`);
  const items = range(s.minItems, s.maxItems, " items");
  if (items) out.push(items);
  if (s.format) out.push(`format ${s.format}`);
  else if (s.pattern) out.push(`matches ${code(s.pattern)}`);
  return out.join("; ");
}

/** One row per field, nested fields after their parent. */
function rows(object: S, prefix = ""): string[][] {
  const required = new Set(object.required ?? []);
  return Object.entries(object.properties ?? {}).flatMap(([key, raw]) => {
    const name = prefix + key;
    const { schema, nullable } = nonNull(raw);
    const type = typeOf(schema) + (nullable ? " or null" : "");
    const def = schema.default === undefined ? "" : code(JSON.stringify(schema.default));
    const row = [code(name), type, required.has(key) ? "yes" : "no", def, constraints(schema), schema.description ?? ""];
    const inner =
      schema.type === "object" && schema.properties
        ? rows(schema, `${name}.`)
        : schema.type === "array" && schema.items?.properties
          ? rows(schema.items, `${name}[].`)
          : isMap(schema) && (schema.additionalProperties as S).properties
            ? rows(schema.additionalProperties as S, `${name}.<key>.`)
            : [];
    return [row.map(cell), ...inner];
  });
}

/** The field table of an object schema. */
export function fieldTable(object: S): string {
  const body = rows(object);
  if (body.length === 0) return "No fields: send `{}` (or an empty body).";
  return [
    "| field | type | required | default | constraints | description |",
    "|---|---|---|---|---|---|",
    ...body.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

/** An object's table, or for a union one table per form, each under its title and description. */
export function schemaTables(schema: S): string {
  if (!schema.anyOf) return fieldTable(schema);
  const intro = schema.description ? `${schema.description}\n\n` : "";
  return (
    intro +
    schema.anyOf
      .map((form, i) => {
        const name = form.title ?? `form ${i + 1}`;
        return `*${name}* form${form.description ? ` — ${form.description}` : ""}\n\n${fieldTable(form)}`;
      })
      .join("\n\n")
  );
}

/** Raw JSON Schemas in one collapsible block. */
export function rawSchemas(title: string, schemas: Array<[string, JsonSchema]>): string {
  const blocks = schemas.map(([label, s]) => `${label}:\n\n\`\`\`json\n${JSON.stringify(s, null, 2)}\n\`\`\``);
  return `<details><summary>${title}</summary>\n\n${blocks.join("\n\n")}\n\n</details>`;
}
