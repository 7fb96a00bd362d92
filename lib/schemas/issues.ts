// Validation messages a caller can act on: each names the field and what was expected.
//
// zod's own messages are mostly that already ("expected number, received string"), except
// for a union: a request that matches none of its forms gets one "Invalid input" naming
// nothing. Here a union's issue is replaced by the issues of the form the request was
// meant for — the branch with the fewest problems, where every unknown key counts, so the
// keys a request carries pick its form — followed by that form's name and fields:
//
//   persona: expected string, received number (select form {channel, persona})
//   system_prompt: required (define form {name, system_prompt, …})
//
// When no branch stands out (an empty object), the message lists every form instead.
// A union branch names itself with `.meta({ title })`. Schemas are read through zod 4's
// `_zod.def`, the definition every schema carries.
import type { z } from "zod";

type Path = ReadonlyArray<PropertyKey>;

/** The parts of a zod 4 issue this file reads. */
interface Issue {
  code: string;
  path: Path;
  message: string;
  keys?: string[];
  errors?: Issue[][];
  discriminator?: string;
  options?: unknown[];
}

/** The parts of a zod 4 schema definition this file reads. */
interface Def {
  type: string;
  shape?: Record<string, Schema>;
  innerType?: Schema;
  in?: Schema;
  element?: Schema;
  valueType?: Schema;
  items?: Schema[];
  options?: Schema[];
}
interface Schema {
  _zod: { def: Def; optin?: string };
  meta?: () => { title?: string } | undefined;
}

/** At most this many problems are reported in one message. */
const MAX_ISSUES = 5;

const WRAPPERS = new Set(["optional", "nullable", "default", "prefault", "readonly", "catch", "nonoptional"]);

/** The schema with optional/default/pipe wrappers removed. */
function unwrap(s: Schema | undefined): Schema | undefined {
  for (let d = s?._zod.def; d; d = s?._zod.def) {
    if (WRAPPERS.has(d.type)) s = d.innerType;
    else if (d.type === "pipe") s = d.in;
    else return s;
  }
  return s;
}

/** The value at `path` in `input`, or undefined. */
function valueAt(input: unknown, path: Path): unknown {
  let v = input;
  for (const step of path) {
    if (typeof v !== "object" || v === null || !Object.hasOwn(v, step)) return undefined;
    v = (v as Record<PropertyKey, unknown>)[step];
  }
  return v;
}

const fieldName = (path: Path) => path.map(String).join(".");

const titleOf = (branch: Schema) => branch.meta?.()?.title ?? unwrap(branch)?.meta?.()?.title;

/** An object schema's fields, required ones first, optional ones as "…": `{name, system_prompt, …}`. */
function fieldList(s: Schema): string | undefined {
  const shape = s._zod.def.type === "object" ? s._zod.def.shape : undefined;
  if (!shape) return undefined;
  const names = Object.keys(shape);
  const required = names.filter((k) => shape[k]._zod.optin === undefined);
  return `{${[...required, ...(required.length < names.length ? ["…"] : [])].join(", ")}}`;
}

/** How a union branch is named in a message: `select form {channel, persona}`, or its type. */
function formLabel(branch: Schema): string {
  const s = unwrap(branch) ?? branch;
  const title = titleOf(branch);
  const fields = fieldList(s);
  if (fields) return title ? `${title} form ${fields}` : `form ${fields}`;
  return title ?? s._zod.def.type;
}

/** The union branch sharing most keys with `value` (the first on a tie). */
function branchFor(options: Schema[], value: unknown): Schema | undefined {
  const keys = typeof value === "object" && value !== null ? Object.keys(value) : [];
  const shared = (b: Schema) => keys.filter((k) => Object.hasOwn(unwrap(b)?._zod.def.shape ?? {}, k)).length;
  return options.reduce<Schema | undefined>((a, b) => (!a || shared(b) > shared(a) ? b : a), undefined);
}

/**
 * The schema that checked the value at `path` below `s` (`input` is the value `s` checked),
 * and the last union branch on the way (`form`); with `keepUnion`, a union at `path` itself
 * is returned as is. zod reports some problems of a union's branch without the union around them
 * (a number out of range, extra keys): the branch is then the one sharing most keys with
 * the value, which is the one zod chose.
 */
function resolve(s: Schema | undefined, path: Path, input: unknown, keepUnion = false): { schema?: Schema; form?: Schema } {
  let form: Schema | undefined;
  for (let i = 0; ; i++) {
    s = unwrap(s);
    const d = s?._zod.def;
    if (i === path.length && keepUnion) return { schema: s, form };
    if (d?.type === "union") {
      form = branchFor(d.options ?? [], valueAt(input, path.slice(0, i)));
      s = unwrap(form);
    }
    if (i === path.length) return { schema: s, form };
    const def = s?._zod.def;
    const step = path[i];
    if (def?.type === "object") s = def.shape?.[String(step)];
    else if (def?.type === "array") s = def.element;
    else if (def?.type === "record") s = def.valueType;
    else if (def?.type === "tuple") s = def.items?.[Number(step)];
    else return { form };
  }
}

/** How wrong a branch is: one per problem, one per unknown key (a key of another form). */
const cost = (issues: Issue[]) => issues.reduce((n, i) => n + (i.code === "unrecognized_keys" ? (i.keys?.length ?? 1) : 1), 0);

/** zod's message without its category prefix ("Invalid input: ", "Too big: ", …). */
const bare = (message: string) => message.replace(/^(Invalid input|Invalid option|Too small|Too big|Invalid string): /, "");

/** One issue as `field: message` lines (several for unknown keys); `at` is where `root` sits in the input. */
function describe(issue: Issue, root: Schema | undefined, input: unknown, at: Path): string[] {
  const path = [...at, ...issue.path];
  const here = (text: string, p: Path = path) => (p.length ? `${fieldName(p)}: ${text}` : text);
  const local = valueAt(input, at);
  if (issue.code === "invalid_union") return describeUnion(issue, resolve(root, issue.path, local, true).schema, input, path);
  if (issue.code === "unrecognized_keys") {
    const { schema, form } = resolve(root, issue.path, local);
    const known = schema?._zod.def.type === "object" ? Object.keys(schema._zod.def.shape ?? {}) : [];
    const whose = form ? `${titleOf(form) ?? "its"} form ` : "";
    const hint = known.length ? ` (${whose}fields: ${known.join(", ")})` : "";
    return (issue.keys ?? []).map((k) => here(`unknown field${hint}`, [...path, k]));
  }
  const text = issue.code === "invalid_type" && valueAt(input, path) === undefined ? "required" : bare(issue.message);
  const { form } = resolve(root, issue.path.slice(0, -1), local);
  return [here(form ? `${text} (${formLabel(form)})` : text)];
}

/** A union's issue as the first problem of the branch the request was meant for, naming that form. */
function describeUnion(issue: Issue, union: Schema | undefined, input: unknown, path: Path): string[] {
  const here = (text: string) => (path.length ? `${fieldName(path)}: ${text}` : text);
  const branches = union?._zod.def.type === "union" ? (union._zod.def.options ?? []) : [];
  const errors = issue.errors ?? [];
  if (errors.length === 0) {
    // A discriminated union whose tag (the issue's path) matched nothing, or several forms matched at once.
    if (issue.discriminator) {
      const options = (issue.options ?? []).map((o) => JSON.stringify(o)).join(" | ");
      return [here(`expected one of ${options}`)];
    }
    return [here(`matches more than one of ${branches.map(formLabel).join(", ") || "the accepted forms"}`)];
  }
  const costs = errors.map(cost);
  const best = Math.min(...costs);
  const chosen = costs.indexOf(best);
  if (costs.lastIndexOf(best) !== chosen) {
    const forms = branches.length ? branches.map(formLabel).join(" or ") : "one of the accepted forms";
    return [here(`expected ${forms}`)];
  }
  const branch = branches[chosen];
  const first = describe(errors[chosen][0], branch, input, path)[0];
  return [branch ? `${first} (${formLabel(branch)})` : first];
}

/**
 * One line naming every problem (up to five) of a failed parse of `input` with `schema`:
 * `messages.0.role: expected one of "system"|"user"|"assistant"; temperature: expected number to be <=2`.
 */
export function describeIssues(schema: z.ZodType, input: unknown, issues: ReadonlyArray<z.core.$ZodIssue>): string {
  const root = schema as unknown as Schema;
  return issues
    .flatMap((i) => describe(i as unknown as Issue, root, input, []))
    .slice(0, MAX_ISSUES)
    .join("; ");
}
