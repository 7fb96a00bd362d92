// Least privilege: the service runs under exactly the permission sets documented in
// docs/security.md (parsed from its code blocks, so doc and test cannot drift), exercises
// every endpoint and every event type without a single permission violation; a plugin with
// the plugin set can call what plugins may and gets a permissions error (not a timeout) for
// the rest, the admin set adds the admin subjects, and every permission of the service set
// is shown to be used by something no other permission allows.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "nats";
import { createClient } from "../lib/client";
import type { RuntimeLimiter } from "../lib/limiter";
import type { MemoryService } from "../lib/memory/types";
import { projectRoot } from "../runtime/nats-server";
import { replayEvents } from "../runtime/replay";
import { ENDPOINTS, endpointSubject, isAdminEndpoint, type EndpointName } from "../lib/subjects";
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
const pw = { root: secret("root"), svc: secret("svc"), trivia: secret("trivia"), quiz: secret("quiz"), ops: secret("ops") };
const subj = (n: EndpointName) => endpointSubject("rosey", n);
/** The inbox root each documented set allows. */
const inboxOf = (p: Permissions) => p.subscribe!.allow![0].replace(/\.>$/, "");
/** A second plugin: the plugin set on an inbox root of its own. */
const quizPerms: Permissions = { ...PERMS.plugin, subscribe: { allow: ["_INBOX_quiz.>"] } };

/**
 * A server whose users are root (everything), svc (the given set), trivia and quiz (the
 * plugin set, each on its own inbox) and ops (the admin set). `http_port: -1` opens the
 * monitoring port on a random port, for the service's subscriptions.
 */
async function serverWith(servicePerms: Permissions, violations: string[], monitor?: (port: number) => void): Promise<TestServer> {
  return startTestServer({
    config: `http_port: -1\n` + usersBlock([
      { user: "root", password: pw.root },
      { user: "svc", password: pw.svc, permissions: servicePerms },
      { user: "trivia", password: pw.trivia, permissions: PERMS.plugin },
      { user: "quiz", password: pw.quiz, permissions: quizPerms },
      { user: "ops", password: pw.ops, permissions: PERMS.admin },
    ]),
    onLog: (line) => {
      if (/Violation/.test(line)) violations.push(line);
      const m = /http monitor on (?:https?:\/\/)?[^\s:]+:(\d+)/i.exec(line);
      if (m) monitor?.(Number(m[1]));
    },
  });
}

/** Service config: small limits and an early summary so every event type fires. */
const serviceConfig = {
  nats: { user: "svc", password: pw.svc } as never,
  limits: { user_per_minute: 100, user_per_hour: 5 } as never,
  memory: { summarize_after: 6, history_messages: 4 } as never,
};

const login = (srv: TestServer, user: "root" | "trivia" | "quiz" | "ops") =>
  connect({
    servers: srv.url,
    user,
    pass: pw[user],
    name: `test-${user}`,
    inboxPrefix: { root: undefined, trivia: inboxOf(PERMS.plugin), quiz: "_INBOX_quiz", ops: inboxOf(PERMS.admin) }[user],
  });

/**
 * Calls every endpoint (and discovery) the way plugins do — the admin endpoints through the
 * administrator's connection — and returns the replies by endpoint.
 */
async function exerciseEverything(plugin: NatsConnection, ops: NatsConnection): Promise<Record<string, any[]>> {
  const seen: Record<string, any[]> = {};
  const call = async (name: EndpointName, body: unknown) => {
    const r = await request(isAdminEndpoint(name) ? ops : plugin, subj(name), body);
    (seen[name] ??= []).push(r.body);
    return r.body;
  };
  await call("persona_define", { name: "pirate", system_prompt: "Talk like a pirate.", description: "Arr", owner: "ops" });
  await call("persona_define", { name: "parrot", system_prompt: "Repeat." });
  await call("persona_delete", { name: "parrot" });
  // A deleted persona cannot be selected any more.
  expect((await request(plugin, subj("persona_set"), { channel: "#perm", persona: "parrot" })).body).toMatchObject({ error_code: "not_found" });
  await call("persona_set", { channel: "#perm", persona: "pirate" });
  await call("persona_get", { channel: "#perm" });
  await call("persona_list", {});
  const added = await call("memory_add", { channel: "#perm", content: "Alice likes green tea", user_id: "alice" });
  await call("memory_add", { channel: "#perm", content: "The channel talks about boats", category: "topic" });
  await call("memory_recall", { channel: "#perm", query: "tea", user_id: "alice" });
  await call("memory_forget", { channel: "#perm", id: added.items?.[0]?.id ?? "missing" });
  for (let i = 0; i < 6; i++) await call("chat", { channel: "#perm", user: "alice", message: `message number ${i} about boats` });
  await call("complete", { messages: [{ role: "user", content: "Say hi" }], user: "bob" });
  // A streamed reply: its chunks and its reply all reach the plugin.
  const streamed = [];
  for await (const part of createClient(plugin).chatStream({ channel: "#perm", user: "bob", message: "stream me a reply" })) streamed.push(part);
  expect(streamed.length).toBeGreaterThan(2);
  expect(streamed.at(-1)).toMatchObject({ success: true, content: expect.stringContaining("stream me a reply") });
  await call("summarize", { text: "Boats float on water. Sails catch wind. ".repeat(8), max_length: 10, user: "bob" });
  await call("chat", { channel: "#perm", user: "carol", message: "" }); // a validation error event
  await call("context_reset", { channel: "#perm" });
  await call("memory_forget", { channel: "#perm", user_id: "alice" });
  await call("status", {});
  await call("usage", { user: "alice" });
  await call("usage", { channel: "#perm" });
  const sc = plugin.services.client({ maxWait: 500 } as never);
  for (const verb of ["ping", "info", "stats"] as const) {
    const found = [];
    for await (const x of await sc[verb]("rosey-llm")) found.push(x);
    (seen[`$SRV.${verb}`] ??= []).push(found.length);
  }
  return seen;
}

async function eventTypes(root: NatsConnection): Promise<Set<string>> {
  const types = new Set<string>();
  for await (const e of replayEvents(root.jetstream(), { prefix: "rosey" })) types.add(String(e.event.event));
  return types;
}

function expectAllAnswered(seen: Record<string, any[]>): void {
  for (const name of Object.keys(ENDPOINTS)) expect(seen[name]?.length, name).toBeGreaterThan(0);
  const ok = (name: string) => seen[name].every((b) => b.success === true);
  for (const name of Object.keys(ENDPOINTS).filter((n) => n !== "chat")) {
    expect(ok(name), `${name}: ${JSON.stringify(seen[name])}`).toBe(true);
  }
  expect(seen.chat.slice(0, 5).every((b) => b.success)).toBe(true);
  expect(seen.chat[5]).toMatchObject({ success: false, error_code: "rate_limited" });
  expect(seen.chat[6]).toMatchObject({ success: false, error_code: "validation" });
  expect(seen.persona_get[0].persona.name).toBe("pirate");
  expect(seen.memory_recall[0].count).toBeGreaterThan(0);
  for (const verb of ["ping", "info", "stats"]) expect(seen[`$SRV.${verb}`], verb).toEqual([1]);
}

/** True when NATS subject pattern `pattern` covers `subject` (itself possibly a wildcard subscription). */
function covers(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (p[i] === "*" ? s[i] === ">" : p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

/** Resolves with the error a subscription gets, or null if it stays open. */
async function subscribeError(nc: NatsConnection, subject: string): Promise<Error | null> {
  let error: Error | null = null;
  const sub = nc.subscribe(subject, { callback: (err) => void (error ??= err) });
  await nc.flush();
  for (let i = 0; i < 50 && !error; i++) await new Promise((r) => setTimeout(r, 20));
  sub.unsubscribe();
  return error as Error | null;
}

describe("the documented permission sets", () => {
  it("are all present in docs/security.md", () => {
    expect(Object.keys(PERMS).sort()).toEqual(["admin", "plugin", "service", "service-preprovisioned"]);
    // Any number of messages to a reply subject: a streamed reply's chunks, then the reply.
    for (const set of ["service", "service-preprovisioned"]) expect(PERMS[set].allow_responses).toEqual({ max: -1, expires: "2m" });
    // The smaller set must really be smaller: no create or update of streams.
    expect(PERMS["service-preprovisioned"].publish!.allow!.some((s) => /CREATE\.(KV_)?ROSEY_LLM|UPDATE/.test(s.replace(/CONSUMER\.CREATE/, "")))).toBe(false);
  });

  it("list every endpoint subject for the service, and keep the admin subjects from plugins only", () => {
    const all = (Object.keys(ENDPOINTS) as EndpointName[]).map(subj);
    for (const set of ["service", "service-preprovisioned"]) {
      expect(PERMS[set].subscribe!.allow!.filter((x) => x.startsWith("rosey.llm.")).sort()).toEqual([...all].sort());
    }
    const allowed = (p: Permissions, s: string) =>
      p.publish!.allow!.some((a) => covers(a, s)) && !(p.publish!.deny ?? []).some((d) => covers(d, s));
    for (const name of Object.keys(ENDPOINTS) as EndpointName[]) {
      expect(allowed(PERMS.plugin, subj(name)), name).toBe(!isAdminEndpoint(name));
      expect(allowed(PERMS.admin, subj(name)), name).toBe(true);
    }
    expect(inboxOf(PERMS.plugin)).not.toBe("_INBOX");
    expect(inboxOf(PERMS.admin)).not.toBe(inboxOf(PERMS.plugin));
  });
});

describe("the service under the full service set (provisions its own state)", () => {
  const violations: string[] = [];
  /** Every subject published on the account while the service started and was exercised. */
  const published = new Set<string>();
  let monitorPort = 0;
  let srv: TestServer;
  let svc: TestInstance;
  let plugin: NatsConnection;
  let quiz: NatsConnection;
  let ops: NatsConnection;
  let root: NatsConnection;

  beforeAll(async () => {
    srv = await serverWith(PERMS.service, violations, (port) => (monitorPort = port));
    root = await login(srv, "root");
    const tap = root.subscribe(">", { callback: (_err, m) => void published.add(m.subject) });
    await root.flush();
    svc = await startInstance(srv.url, serviceConfig);
    await svc.nc.flush();
    [plugin, quiz, ops] = await Promise.all([login(srv, "trivia"), login(srv, "quiz"), login(srv, "ops")]);
    expectAllAnswered(await exerciseEverything(plugin, ops));
    // The background sweep of finished usage days takes a step.
    await (svc.ctx.limiter as RuntimeLimiter).sweep();
    await (svc.ctx.memory as MemoryService).settled();
    await svc.ctx.events.flush();
    await svc.nc.flush();
    await root.flush();
    tap.unsubscribe();
  });
  afterAll(async () => {
    await Promise.all([plugin, quiz, ops, root].map((nc) => nc?.close()));
    await svc?.stop();
    await srv?.cleanup();
  });

  it("publishes every event type into the stream", async () => {
    const types = await eventTypes(root);
    for (const t of ["response", "error", "memory", "summarized", "usage.threshold"]) expect(types, t).toContain(t);
  });

  it("did all of it without one permission violation by the service", () => {
    expect(violations.filter((l) => /User "svc"|user:svc"/.test(l))).toEqual([]);
  });

  describe("every permission of the service set is needed", () => {
    /**
     * Publish permissions used only when stream settings change (or by a recovery path a
     * healthy test run does not take), with why each is kept. Every other one must be seen.
     */
    const KEPT: Array<[RegExp, string]> = [
      [/^\$JS\.API\.STREAM\.UPDATE\./, "used when a setting changes a stream (replicas, limits): the restart below shows it"],
      [
        /^\$JS\.API\.STREAM\.MSG\.GET\.KV_ROSEY_LLM_(LIMITS|USAGE|PERSONAS|MEMORY)$/,
        "reads a key's last message back after a write's acknowledgement was lost (test/faults.test.ts); memory and personas also read from the stream leader when replicated",
      ],
    ];

    it("each publish permission allows a subject the service published that no other permission allows", () => {
      const allow = PERMS.service.publish!.allow!;
      const unused: string[] = [];
      for (const p of allow) {
        if (KEPT.some(([re]) => re.test(p))) continue;
        const only = [...published].some((s) => covers(p, s) && allow.every((q) => q === p || !covers(q, s)));
        if (!only) unused.push(p);
      }
      expect(unused).toEqual([]);
    });

    it("each subscribe permission covers a subscription of the service that no other covers", async () => {
      const res = await fetch(`http://127.0.0.1:${monitorPort}/connz?subs=detail&auth=true`);
      const connz = (await res.json()) as { connections: Array<{ authorized_user?: string; subscriptions_list_detail?: Array<{ subject: string }> }> };
      const subs = connz.connections.filter((c) => c.authorized_user === "svc").flatMap((c) => c.subscriptions_list_detail ?? []).map((d) => d.subject);
      expect(subs.length).toBeGreaterThan(0);
      const allow = PERMS.service.subscribe!.allow!;
      const unused = allow.filter((p) => !subs.some((s) => covers(p, s) && allow.every((q) => q === p || !covers(q, s))));
      expect(unused).toEqual([]);
    });

    it("a restart with other storage limits uses each stream update permission, without a violation", async () => {
      const seen = new Set<string>();
      const tap = root.subscribe("$JS.API.STREAM.UPDATE.>", { callback: (_err, m) => void seen.add(m.subject) });
      await root.flush();
      const changed = await startInstance(srv.url, {
        ...serviceConfig,
        storage: { limits_max_bytes: 128 << 20, usage_max_bytes: 256 << 20, personas_max_bytes: 32 << 20, memory_max_bytes: 512 << 20 } as never,
        events: { max_age_days: 7 } as never,
      });
      await changed.stop();
      await root.flush();
      tap.unsubscribe();
      const updates = PERMS.service.publish!.allow!.filter((p) => p.includes(".STREAM.UPDATE."));
      expect([...seen].sort()).toEqual([...updates].sort());
      expect(violations.filter((l) => /User "svc"|user:svc"/.test(l))).toEqual([]);
    });
  });

  describe("a plugin with the plugin set", () => {
    it("gets a permissions error at once, not a timeout, for every admin endpoint", async () => {
      for (const name of (Object.keys(ENDPOINTS) as EndpointName[]).filter(isAdminEndpoint)) {
        const err = await plugin.request(subj(name), new TextEncoder().encode("{}"), { timeout: 20_000 }).then(
          () => null,
          (e: Error & { code?: string }) => e,
        );
        expect(err?.code, name).toBe("PERMISSIONS_VIOLATION");
      }
    });

    it("through the typed client: forbidden for defining a persona, which stays undefined", async () => {
      const llm = createClient(plugin, { timeoutMs: 20_000 });
      expect(await llm.personaDefine({ name: "hijack", system_prompt: "Obey the plugin." })).toMatchObject({
        success: false,
        transport: true,
        error_code: "forbidden",
      });
      expect(await llm.personaDelete({ name: "pirate" })).toMatchObject({ error_code: "forbidden" });
      expect(await llm.memoryForget({ channel: "#perm", user_id: "alice" })).toMatchObject({ error_code: "forbidden" });
      expect(await llm.contextReset({ channel: "#perm" })).toMatchObject({ error_code: "forbidden" });
      // What plugins may do still works on the same connection, on its own inbox.
      const list = await llm.personaList();
      expect(list.success && list.personas.map((p) => p.name)).toContain("pirate");
      expect(list.success && list.personas.map((p) => p.name)).not.toContain("hijack");
    });

    it("cannot open a KV bucket", async () => {
      await expect(plugin.jetstream().views.kv("ROSEY_LLM_MEMORY")).rejects.toThrow(/permission/i);
    });

    it("cannot direct-get a key", async () => {
      const key = "$JS.API.DIRECT.GET.KV_ROSEY_LLM_PERSONAS.$KV.ROSEY_LLM_PERSONAS.def.cGlyYXRl";
      const err = await plugin.request(key, undefined, { timeout: 20_000 }).catch((e) => e);
      expect(err.code).toBe("PERMISSIONS_VIOLATION");
    });

    it.each([
      ["the memory bucket's subjects", "$KV.ROSEY_LLM_MEMORY.>"],
      ["the service's inbox, where KV values travel", "_INBOX_ROSEY_LLM.>"],
      ["the shared inbox root", "_INBOX.>"],
      ["another plugin's replies", "_INBOX_quiz.>"],
      ["the administrator's replies", "_INBOX_ADMIN.>"],
      ["other plugins' requests", "rosey.llm.chat"],
      ["the event subjects", "rosey.event.llm.>"],
    ])("cannot subscribe to %s", async (_what, subject) => {
      expect(String(await subscribeError(plugin, subject))).toMatch(/permission/i);
    });

    it("and another plugin cannot read its replies either", async () => {
      expect(String(await subscribeError(quiz, `${inboxOf(PERMS.plugin)}.>`))).toMatch(/permission/i);
    });

    it("cannot write a KV key by publishing to it", async () => {
      const before = violations.length;
      plugin.publish("$KV.ROSEY_LLM_PERSONAS.sel.x", new TextEncoder().encode("pirate"));
      await plugin.flush();
      for (let i = 0; i < 50 && violations.length === before; i++) await new Promise((r) => setTimeout(r, 20));
      // Current servers name the user before the violation, older ones after it.
      expect(violations.slice(before).join("\n")).toMatch(/(user:trivia" - Publish Violation|Publish Violation - User "trivia").*Subject "\$KV\.ROSEY_LLM_PERSONAS\.sel\.x"/);
      const kv = await root.jetstream().views.kv("ROSEY_LLM_PERSONAS");
      expect(await kv.get("sel.x")).toBeNull();
    });
  });

  describe("an administrator with the admin set", () => {
    it("defines and deletes through the typed client on its own inbox", async () => {
      const llm = createClient(ops);
      expect(await llm.personaDefine({ name: "judge", system_prompt: "Be fair.", owner: "ops" })).toMatchObject({ success: true });
      expect(await llm.personaDelete({ name: "judge" })).toMatchObject({ success: true, persona: { owner: "ops" } });
    });

    it.each([
      ["the shared inbox root", "_INBOX.>"],
      ["a plugin's replies", `${inboxOf(PERMS.plugin)}.>`],
      ["the memory bucket's subjects", "$KV.ROSEY_LLM_MEMORY.>"],
    ])("cannot subscribe to %s", async (_what, subject) => {
      expect(String(await subscribeError(ops, subject))).toMatch(/permission/i);
    });

    it("cannot read the KV buckets", async () => {
      await expect(ops.jetstream().views.kv("ROSEY_LLM_MEMORY")).rejects.toThrow(/permission/i);
    });
  });
});

describe("the service under the smaller set, with state provisioned by an operator", () => {
  const violations: string[] = [];
  let srv: TestServer;
  let plugin: NatsConnection;
  let ops: NatsConnection;
  let root: NatsConnection;

  beforeAll(async () => {
    srv = await serverWith(PERMS["service-preprovisioned"], violations);
    // The operator provisions: one start and stop of the service under full rights.
    const provisioner = await startInstance(srv.url, { ...serviceConfig, nats: { user: "root", password: pw.root } as never });
    await provisioner.stop();
    [plugin, ops, root] = await Promise.all([login(srv, "trivia"), login(srv, "ops"), login(srv, "root")]);
  });
  afterAll(async () => {
    await Promise.all([plugin, ops, root].map((nc) => nc?.close()));
    await srv?.cleanup();
  });

  it("starts, answers every endpoint, publishes every event type, with no violation", async () => {
    const svc = await startInstance(srv.url, serviceConfig);
    await svc.nc.flush();
    try {
      expectAllAnswered(await exerciseEverything(plugin, ops));
      await (svc.ctx.limiter as RuntimeLimiter).sweep();
      await (svc.ctx.memory as MemoryService).settled();
      await svc.ctx.events.flush();
      const types = await eventTypes(root);
      for (const t of ["response", "error", "memory", "summarized", "usage.threshold"]) expect(types, t).toContain(t);
    } finally {
      await svc.stop();
    }
    expect(violations.filter((l) => /User "svc"|user:svc"/.test(l))).toEqual([]);
  });

  it("refuses to start, clearly, when configuration asks it to change the stream", async () => {
    const before = violations.length;
    await expect(startInstance(srv.url, { ...serviceConfig, events: { max_age_days: 7 } })).rejects.toThrow(/permission/i);
    // The server logs the violation on its own time: wait for it, boundedly.
    for (let i = 0; i < 50 && violations.length === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(violations.slice(before).join("\n")).toMatch(/STREAM\.UPDATE\.ROSEY_LLM_EVENTS/);
  });
});
