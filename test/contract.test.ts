// The contract as published: docs/contract.md is what the generator renders from the code
// today; a running service's $SRV.INFO carries the same JSON Schemas and its $SRV.STATS
// conforms to the micro v1 stats schema; every key it writes follows the documented layout
// of its bucket.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { BUCKET_LAYOUTS, parseKey } from "../lib/keys/layout";
import { jsonSchema } from "../lib/schemas/json";
import { ENDPOINTS, endpointSubject, type EndpointName } from "../lib/subjects";
import { BUCKETS } from "../runtime/provision";
import { loadHandlers } from "../runtime/service";
import { renderContract } from "../scripts/contract";
import { request, useService } from "./helpers/service";

describe("docs/contract.md", () => {
  it("is what npm run contract generates from the code", async () => {
    const committed = readFileSync(new URL("../docs/contract.md", import.meta.url), "utf8");
    expect(committed === (await renderContract()), "docs/contract.md is stale: run npm run contract").toBe(true);
  });

  it("documents every endpoint, error code, event and bucket", async () => {
    const doc = await renderContract();
    for (const [name, e] of Object.entries(ENDPOINTS)) {
      expect(doc).toContain(`### ${name}\n`);
      expect(doc).toContain(`\`rosey.${e.suffix}\``);
    }
    for (const code of ["validation", "rate_limited", "payload_too_large", "internal"]) expect(doc).toMatch(new RegExp(`\\| \`${code}\` \\| \\d{3} \\|`));
    expect(doc).toContain("`rosey.event.llm.usage.threshold`");
    for (const bucket of Object.values(BUCKETS)) expect(doc).toContain(`### ${bucket}\n`);
    expect(doc).toContain("| `d.<day>.u.<user>` |");
  });
});

// The micro v1 stats response (io.nats.micro.v1.stats_response, NATS ADR-32), written out
// from the specification's field list.
const Token = z.string().regex(/^[a-zA-Z0-9_-]+$/);
const Int = z.number().int();
const MicroStats = z.object({
  type: z.literal("io.nats.micro.v1.stats_response"),
  name: Token,
  id: z.string().min(1),
  version: z.string().regex(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/),
  metadata: z.record(z.string(), z.string()).nullable().optional(),
  started: z.iso.datetime({ offset: true }),
  endpoints: z.array(
    z.object({
      name: Token,
      subject: z.string().min(1),
      queue_group: z.string().min(1),
      num_requests: Int,
      num_errors: Int,
      last_error: z.string(),
      processing_time: Int,
      average_processing_time: Int,
      data: z.record(z.string(), z.unknown()).optional(),
    }),
  ),
});

describe("a running service", () => {
  const svc = useService({ memory: { summarize_after: 4, history_messages: 2 } as never });
  const subj = (n: EndpointName) => endpointSubject("rosey", n);

  it("answers $SRV.STATS as micro v1 specifies, last_error an empty string until an error", async () => {
    await request(svc.nc, subj("status"), {});
    await request(svc.nc, subj("chat"), { channel: "#stats" });
    const m = await svc.nc.request("$SRV.STATS.rosey-llm", new Uint8Array(), { timeout: 2_000 });
    const stats = MicroStats.parse(JSON.parse(new TextDecoder().decode(m.data)));
    expect(stats.endpoints.map((e) => e.name).sort()).toEqual(Object.keys(ENDPOINTS).sort());
    const byName = new Map(stats.endpoints.map((e) => [e.name, e]));
    expect(byName.get("status")).toMatchObject({ num_requests: 1, num_errors: 0, last_error: "" });
    expect(byName.get("persona_list")).toMatchObject({ num_requests: 0, last_error: "" });
    expect(byName.get("chat")).toMatchObject({ num_errors: 1, last_error: expect.stringMatching(/^validation: .*message: required/) });
  });

  it("publishes in $SRV.INFO the JSON Schemas the contract shows", async () => {
    const m = await svc.nc.request("$SRV.INFO.rosey-llm", new Uint8Array(), { timeout: 2_000 });
    const info = JSON.parse(new TextDecoder().decode(m.data)) as { endpoints: Array<{ name: string; metadata: Record<string, string> }> };
    const mods = new Map((await loadHandlers(new URL("../dist/handlers", import.meta.url).pathname)).map((h) => [h.name as string, h]));
    for (const e of info.endpoints) {
      const mod = mods.get(e.name)!;
      expect(JSON.parse(e.metadata.request_schema)).toEqual(jsonSchema(mod.request, "input"));
      expect(JSON.parse(e.metadata.response_schema)).toEqual(jsonSchema(mod.response, "output"));
    }
  });

  it("writes only keys that follow the documented layout of their bucket", async () => {
    for (let i = 0; i < 4; i++) await request(svc.nc, subj("chat"), { channel: "#layout", user: "ann.b > *", message: `turn ${i}` });
    await request(svc.nc, subj("memory_add"), { channel: "#layout", content: "Ann likes tea", user_id: "ann.b > *" });
    await request(svc.nc, subj("persona_define"), { name: "pirate", system_prompt: "Talk like a pirate." });
    await request(svc.nc, subj("persona_set"), { channel: "#layout", persona: "pirate" });
    const jsm = await svc.nc.jetstreamManager();
    const keysOf = async (bucket: string) => {
      const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: ">" });
      return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(`$KV.${bucket}.`.length));
    };
    // Summarizing the history runs after the reply: wait until its summary is stored.
    for (let i = 0; i < 100 && !(await keysOf(BUCKETS.memory)).some((k) => k.startsWith("s.")); i++) await new Promise((r) => setTimeout(r, 50));
    for (const [role, bucket] of Object.entries(BUCKETS) as Array<[keyof typeof BUCKETS, string]>) {
      const keys = await keysOf(bucket);
      expect(keys.length, bucket).toBeGreaterThan(0);
      const layouts = Object.values(BUCKET_LAYOUTS[role].keys).map((k) => k.key);
      for (const k of keys) expect(layouts.some((l) => parseKey(l, k)), `${bucket}: ${k}`).toBe(true);
    }
  });
});
