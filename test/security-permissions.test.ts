// Least privilege: the service runs under exactly the permission sets documented in
// docs/security.md (parsed from its code blocks, so doc and test cannot drift), exercises
// every endpoint and every event type without a single permission violation, and a client
// holding only the documented client set can call the service but not read its state.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "nats";
import type { MemoryService } from "../lib/memory/types";
import { projectRoot } from "../runtime/nats-server";
import { replayEvents } from "../runtime/replay";
import { ENDPOINTS, endpointSubject, type EndpointName } from "../lib/subjects";
import { secret, usersBlock, type Permissions } from "./helpers/auth";
import { startTestServer, type TestServer } from "./helpers/nats";
import { request, startInstance, type TestInstance } from "./helpers/service";

/** The `<!-- permissions: name -->` JSON blocks of docs/security.md. */
function documentedPermissions(): Record<string, Permissions> {
  const doc = readFileSync(join(projectRoot, "docs", "security.md"), "utf8");
  const out: Record<string, Permissions> = {};
  for (const m of doc.matchAll(/<!-- permissions: ([\w-]+) -->\s*```json\n([\s\S]*?)```/g)) out[m[1]] = JSON.parse(m[2]);
  return out;
}

const PERMS = documentedPermissions();
const pw = { admin: secret("admin"), svc: secret("svc"), client: secret("client") };
const subj = (n: EndpointName) => endpointSubject("rosey", n);

/** A server whose users are admin (everything), svc (the given set) and client (the client set). */
async function serverWith(servicePerms: Permissions, violations: string[]): Promise<TestServer> {
  return startTestServer({
    config: usersBlock([
      { user: "admin", password: pw.admin },
      { user: "svc", password: pw.svc, permissions: servicePerms },
      { user: "client", password: pw.client, permissions: PERMS.client },
    ]),
    onLog: (line) => {
      if (/Violation/.test(line)) violations.push(line);
    },
  });
}

/** Service config: small limits and an early summary so every event type fires. */
const serviceConfig = {
  nats: { user: "svc", password: pw.svc } as never,
  limits: { user_per_minute: 100, user_per_hour: 5 } as never,
  memory: { summarize_after: 6, history_messages: 4 } as never,
};

const login = (srv: TestServer, user: "admin" | "client") =>
  connect({ servers: srv.url, user, pass: pw[user], name: `test-${user}` });

/** Calls every endpoint (and discovery) the way plugins do; returns the replies by endpoint. */
async function exerciseEverything(nc: NatsConnection): Promise<Record<string, any[]>> {
  const seen: Record<string, any[]> = {};
  const call = async (name: EndpointName, body: unknown) => {
    const r = await request(nc, subj(name), body);
    (seen[name] ??= []).push(r.body);
    return r.body;
  };
  await call("persona_set", { name: "pirate", system_prompt: "Talk like a pirate.", description: "Arr" });
  await call("persona_set", { channel: "#perm", persona: "pirate" });
  await call("persona_get", { channel: "#perm" });
  await call("persona_list", {});
  const added = await call("memory_add", { channel: "#perm", content: "Alice likes green tea", user_id: "alice" });
  await call("memory_add", { channel: "#perm", content: "The channel talks about boats", category: "topic" });
  await call("memory_recall", { channel: "#perm", query: "tea", user_id: "alice" });
  await call("memory_forget", { channel: "#perm", id: added.items?.[0]?.id ?? "missing" });
  for (let i = 0; i < 6; i++) await call("chat", { channel: "#perm", user: "alice", message: `message number ${i} about boats` });
  await call("complete", { messages: [{ role: "user", content: "Say hi" }], user: "bob" });
  await call("summarize", { text: "Boats float on water. Sails catch wind. ".repeat(8), max_length: 10, user: "bob" });
  await call("chat", { channel: "#perm", user: "carol", message: "" }); // a validation error event
  await call("context_reset", { channel: "#perm" });
  await call("memory_forget", { channel: "#perm", user_id: "alice" });
  await call("status", {});
  await call("usage", { user: "alice" });
  await call("usage", { channel: "#perm" });
  const sc = nc.services.client({ maxWait: 500 } as never);
  for (const verb of ["ping", "info", "stats"] as const) {
    const found = [];
    for await (const x of await sc[verb]("rosey-llm")) found.push(x);
    (seen[`$SRV.${verb}`] ??= []).push(found.length);
  }
  return seen;
}

async function eventTypes(admin: NatsConnection): Promise<Set<string>> {
  const types = new Set<string>();
  for await (const e of replayEvents(admin.jetstream(), { prefix: "rosey" })) types.add(String(e.event.event));
  return types;
}

function expectAllAnswered(seen: Record<string, any[]>): void {
  for (const name of Object.keys(ENDPOINTS)) expect(seen[name]?.length, name).toBeGreaterThan(0);
  const ok = (name: string) => seen[name].every((b) => b.success === true);
  for (const name of ["persona_set", "persona_get", "persona_list", "memory_add", "memory_recall", "memory_forget",
    "complete", "summarize", "context_reset", "status", "usage"]) {
    expect(ok(name), `${name}: ${JSON.stringify(seen[name])}`).toBe(true);
  }
  expect(seen.chat.slice(0, 5).every((b) => b.success)).toBe(true);
  expect(seen.chat[5]).toMatchObject({ success: false, error_code: "rate_limited" });
  expect(seen.chat[6]).toMatchObject({ success: false, error_code: "validation" });
  expect(seen.persona_get[0].persona.name).toBe("pirate");
  expect(seen.memory_recall[0].count).toBeGreaterThan(0);
  for (const verb of ["ping", "info", "stats"]) expect(seen[`$SRV.${verb}`], verb).toEqual([1]);
}

describe("the documented permission sets", () => {
  it("are all present in docs/security.md", () => {
    expect(Object.keys(PERMS).sort()).toEqual(["client", "service", "service-preprovisioned"]);
    expect(PERMS.service.allow_responses).toBe(true);
    // The smaller set must really be smaller: no create or update of streams.
    expect(PERMS["service-preprovisioned"].publish!.allow!.some((s) => /CREATE\.(KV_)?ROSEY_LLM|UPDATE/.test(s.replace(/CONSUMER\.CREATE/, "")))).toBe(false);
  });
});

describe("the service under the full service set (provisions its own state)", () => {
  const violations: string[] = [];
  let srv: TestServer;
  let svc: TestInstance;
  let plugin: NatsConnection;
  let admin: NatsConnection;

  beforeAll(async () => {
    srv = await serverWith(PERMS.service, violations);
    svc = await startInstance(srv.url, serviceConfig);
    await svc.nc.flush();
    [plugin, admin] = await Promise.all([login(srv, "client"), login(srv, "admin")]);
  });
  afterAll(async () => {
    await plugin?.close();
    await admin?.close();
    await svc?.stop();
    await srv?.cleanup();
  });

  it("answers every endpoint and discovery for a client holding only the client set", async () => {
    const seen = await exerciseEverything(plugin);
    expectAllAnswered(seen);
  });

  it("publishes every event type into the stream", async () => {
    await (svc.ctx.memory as MemoryService).settled();
    await svc.ctx.events.flush();
    const types = await eventTypes(admin);
    for (const t of ["response", "error", "memory", "summarized", "usage.threshold"]) expect(types, t).toContain(t);
  });

  it("did all of it without one permission violation by the service", () => {
    expect(violations.filter((l) => /User "svc"/.test(l))).toEqual([]);
  });

  describe("a client with the client set", () => {
    /** Resolves with the error a subscription gets, or null if it stays open. */
    const subscribeError = async (subject: string) => {
      let error: Error | null = null;
      const sub = plugin.subscribe(subject, { callback: (err) => void (error ??= err) });
      await plugin.flush();
      for (let i = 0; i < 50 && !error; i++) await new Promise((r) => setTimeout(r, 20));
      sub.unsubscribe();
      return error as Error | null;
    };

    it("cannot open a KV bucket", async () => {
      const js = plugin.jetstream();
      await expect(js.views.kv("ROSEY_LLM_MEMORY")).rejects.toThrow(/permission/i);
    });

    it("cannot direct-get a key", async () => {
      const key = "$JS.API.DIRECT.GET.KV_ROSEY_LLM_PERSONAS.$KV.ROSEY_LLM_PERSONAS.def.cGlyYXRl";
      await expect(plugin.request(key, undefined, { timeout: 2_000 })).rejects.toThrow(/permission/i);
    });

    it.each([
      ["the memory bucket's subjects", "$KV.ROSEY_LLM_MEMORY.>"],
      ["the service's inbox, where KV values travel", "_INBOX_ROSEY_LLM.>"],
      ["other plugins' requests", "rosey.llm.chat"],
      ["the event subjects", "rosey.event.llm.>"],
    ])("cannot subscribe to %s", async (_what, subject) => {
      expect(String(await subscribeError(subject))).toMatch(/permission/i);
    });

    it("cannot write a KV key by publishing to it", async () => {
      const before = violations.length;
      plugin.publish("$KV.ROSEY_LLM_PERSONAS.sel.x", new TextEncoder().encode("pirate"));
      await plugin.flush();
      for (let i = 0; i < 50 && violations.length === before; i++) await new Promise((r) => setTimeout(r, 20));
      // Current servers name the user before the violation, older ones after it.
      expect(violations.slice(before).join("\n")).toMatch(/(user:client" - Publish Violation|Publish Violation - User "client").*Subject "\$KV\.ROSEY_LLM_PERSONAS\.sel\.x"/);
      const kv = await admin.jetstream().views.kv("ROSEY_LLM_PERSONAS");
      expect(await kv.get("sel.x")).toBeNull();
    });
  });
});

describe("the service under the smaller set, with state provisioned by an operator", () => {
  const violations: string[] = [];
  let srv: TestServer;
  let plugin: NatsConnection;
  let admin: NatsConnection;

  beforeAll(async () => {
    srv = await serverWith(PERMS["service-preprovisioned"], violations);
    // The operator provisions: one start and stop of the service under full rights.
    const provisioner = await startInstance(srv.url, { ...serviceConfig, nats: { user: "admin", password: pw.admin } as never });
    await provisioner.stop();
    [plugin, admin] = await Promise.all([login(srv, "client"), login(srv, "admin")]);
  });
  afterAll(async () => {
    await plugin?.close();
    await admin?.close();
    await srv?.cleanup();
  });

  it("starts, answers every endpoint, publishes every event type, with no violation", async () => {
    const svc = await startInstance(srv.url, serviceConfig);
    await svc.nc.flush();
    try {
      expectAllAnswered(await exerciseEverything(plugin));
      await (svc.ctx.memory as MemoryService).settled();
      await svc.ctx.events.flush();
      const types = await eventTypes(admin);
      for (const t of ["response", "error", "memory", "summarized", "usage.threshold"]) expect(types, t).toContain(t);
    } finally {
      await svc.stop();
    }
    expect(violations.filter((l) => /User "svc"/.test(l))).toEqual([]);
  });

  it("refuses to start, clearly, when configuration asks it to change the stream", async () => {
    const before = violations.length;
    await expect(startInstance(srv.url, { ...serviceConfig, events: { max_age_days: 7 } })).rejects.toThrow(/permission/i);
    // The server logs the violation on its own time: wait for it, boundedly.
    for (let i = 0; i < 50 && violations.length === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(violations.slice(before).join("\n")).toMatch(/STREAM\.UPDATE\.ROSEY_LLM_EVENTS/);
  });
});
