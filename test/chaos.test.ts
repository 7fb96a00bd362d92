// Faults under load, each bounded (fixed request counts, client timeouts) and self-stopping:
// the NATS server restarting, the model provider going down, a runtime process SIGKILLed
// mid-request, and a compare-and-set storm on one hot key from three instances.
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "nats";
import { encodeName, key } from "../lib/keys";
import type { ChannelDoc, RuntimeLimiter, UserDoc } from "../lib/limiter";
import { SYSTEM_USER } from "../lib/llm";
import { BUCKETS, leaderTolerant } from "../runtime/provision";
import { startNatsServer, type NatsServer } from "../runtime/nats-server";
import { outcomeOf, runLoad, summarize, type Outcome } from "./helpers/cluster";
import { startTestServer, type TestServer } from "./helpers/nats";
import { fakeProviders, startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";
import { request, startInstance, type TestInstance } from "./helpers/service";
import { startProcess } from "./helpers/start-process";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dec = new TextDecoder();

/** A client that, like the service, keeps reconnecting. */
const resilientClient = (url: string) =>
  connect({ servers: url, name: "chaos-client", maxReconnectAttempts: -1, reconnectTimeWait: 100 });

const chat = (nc: NatsConnection, user: string, channel: string, message: string, timeout: number) =>
  outcomeOf(request(nc, "rosey.llm.chat", { user, channel, message }, timeout));

/** A success must be the echo of its own turn; the offline model repeats "user: message". */
const wrongOffline = (o: Outcome, user: string, message: string) =>
  o.kind === "ok" && o.body.content !== `[offline] ${user}: ${message}`;

/** Reads every key of every bucket and parses it: state a crash could have torn. */
async function allStateParses(nc: NatsConnection): Promise<number> {
  const js = nc.jetstream();
  let n = 0;
  for (const bucket of Object.values(BUCKETS)) {
    const kv = await js.views.kv(bucket);
    for await (const k of await kv.keys()) {
      const e = await kv.get(k);
      if (!e || e.operation !== "PUT") continue;
      expect(() => JSON.parse(dec.decode(e.value)), `${bucket} ${k}`).not.toThrow();
      n++;
    }
  }
  return n;
}

/** Repeats `probe` until it returns true or `ms` pass (bounded wait for recovery). */
async function eventually(probe: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return true;
    await sleep(100);
  }
  return false;
}

describe("NATS server restart mid-load (single node)", () => {
  let first: TestServer;
  let current: NatsServer | undefined;
  let inst: TestInstance;
  let nc: NatsConnection;

  beforeAll(async () => {
    first = await startTestServer();
    current = first;
    inst = await startInstance(first.url, {});
    nc = await resilientClient(first.url);
  });

  afterAll(async () => {
    await nc?.close();
    await inst?.stop();
    await current?.stop();
    await first?.cleanup();
  }, 30_000);

  it("reconnects and answers again; requests in the outage get a reply or a clean client error", async () => {
    const TOTAL = 200;
    const users = (i: number) => `r${i % 40}`;
    const messages = (i: number) => `restart question ${i}`;
    let outageMs = 0;
    const outcomes = await runLoad(
      TOTAL,
      8,
      (i) => chat(nc, users(i), `#r${i % 8}`, messages(i), 4_000),
      async (done) => {
        if (done !== 60) return;
        // SIGKILL, then the same port and store after a pause: a crash and a restart.
        const t = Date.now();
        current!.process.kill("SIGKILL");
        await new Promise<void>((r) => (current!.process.exitCode !== null || current!.process.signalCode !== null ? r() : current!.process.once("exit", () => r())));
        current = undefined;
        await sleep(1_000);
        current = await startNatsServer({ storeDir: first.storeDir, port: first.port });
        outageMs = Date.now() - t;
      },
    );
    const s = summarize(outcomes);
    console.log(`server restart: outage ${outageMs} ms`, s);
    expect(s.ok + s.error + s.clientError).toBe(TOTAL);
    expect(outcomes.filter((o, i) => wrongOffline(o, users(i), messages(i)))).toEqual([]);
    for (const o of outcomes) if (o.kind === "error") expect(o.body).toMatchObject({ success: false, error_code: expect.any(String) });

    // The service is back: fresh requests all succeed (after a bounded wait for resubscription).
    expect(await eventually(async () => (await chat(nc, "probe", "#probe", "ping", 2_000)).kind === "ok", 20_000)).toBe(true);
    const after = await runLoad(20, 5, (i) => chat(nc, `after${i}`, "#after", `after ${i}`, 5_000));
    expect(summarize(after).ok).toBe(20);
    expect(await allStateParses(nc)).toBeGreaterThan(0);
  }, 90_000);
});

describe("provider outage mid-load", () => {
  let srv: TestServer;
  let fake: FakeOpenAI;
  let inst: TestInstance;
  let nc: NatsConnection;

  beforeAll(async () => {
    srv = await startTestServer();
    fake = await startOpenAIServer();
    inst = await startInstance(srv.url, {
      providers: fakeProviders(fake.url, { api_key: "sk-chaos-test", timeout_ms: 2_000 }, { failure_threshold: 3, cooldown_ms: 60_000 }) as never,
    });
    nc = await resilientClient(srv.url);
  });

  afterAll(async () => {
    await nc?.close();
    await inst?.stop();
    await fake?.close();
    await srv?.cleanup();
  }, 30_000);

  it("keeps answering through the fallback when the provider fails, then refuses connections; status reports it", async () => {
    const TOTAL = 120;
    let closed = false;
    const outcomes = await runLoad(
      TOTAL,
      4,
      (i) => chat(nc, `p${i % 20}`, `#p${i % 4}`, `outage question ${i}`, 10_000),
      async (done) => {
        if (done === 40) fake.setDefault({ kind: "error", status: 500, message: "upstream exploded" });
        if (done === 80) {
          await fake.close(); // from here on: connection refused
          closed = true;
        }
      },
    );
    expect(closed).toBe(true);
    const s = summarize(outcomes);
    const byProvider: Record<string, number> = {};
    for (const o of outcomes) if (o.kind === "ok") byProvider[o.body.provider] = (byProvider[o.body.provider] ?? 0) + 1;
    console.log("provider outage", s, byProvider);
    expect(s.ok).toBe(TOTAL);
    expect(byProvider.openai).toBeGreaterThanOrEqual(40);
    expect(byProvider.offline).toBeGreaterThanOrEqual(40);
    // Answers from the real provider are its echo; fallbacks are the labelled offline echo.
    for (const [i, o] of outcomes.entries()) {
      if (o.kind !== "ok") continue;
      const expected = o.body.provider === "openai" ? `echo: p${i % 20}: outage question ${i}` : `[offline] p${i % 20}: outage question ${i}`;
      expect(o.body.content).toBe(expected);
    }

    const status = (await request(nc, "rosey.llm.status", {})).body;
    const openai = status.providers.find((p: { name: string }) => p.name === "openai");
    expect(status.provider).toBe("offline");
    expect(openai).toMatchObject({ healthy: false, last_error: expect.any(String) });
    expect(openai.cooldown_until).toEqual(expect.any(String));
    expect(JSON.stringify(status)).not.toContain("sk-chaos-test");
  }, 90_000);
});

describe("a runtime process SIGKILLed mid-request", () => {
  let srv: TestServer;
  let fake: FakeOpenAI;
  let survivor: TestInstance;
  let child: ChildProcess | undefined;
  let nc: NatsConnection;

  beforeAll(async () => {
    srv = await startTestServer();
    // Slow replies, so a request is certainly in flight inside the process we kill.
    fake = await startOpenAIServer({ default: { kind: "reply", delay_ms: 400 } });
    const provider = { kind: "openai", base_url: fake.url, api_key: "sk-kill-test", timeout_ms: 5_000, max_retries: 0 } as const;
    survivor = await startInstance(srv.url, {
      providers: { chain: ["openai", "offline"], defs: { openai: { ...provider, model: "survivor-model" }, offline: { kind: "offline", model: "offline-echo-1" } } } as never,
    });
    child = (await startProcess({
      NATS_URL: srv.url,
      LLM_PROVIDERS: "openai,offline",
      OPENAI_BASE_URL: fake.url,
      OPENAI_API_KEY: "sk-kill-test",
      OPENAI_MODEL: "child-model",
    })).child;
    nc = await resilientClient(srv.url);
  }, 60_000);

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await nc?.close();
    await survivor?.stop();
    await fake?.close();
    await srv?.cleanup();
  }, 30_000);

  it("the survivor answers what follows, and no KV state is torn", async () => {
    // Some state to check afterwards: an operator persona selected for a channel.
    const def = await request(nc, "rosey.llm.admin.persona.define", { name: "pirate", system_prompt: "Talk like a pirate." });
    expect(def.body.success).toBe(true);
    expect((await request(nc, "rosey.llm.persona.set", { channel: "#k0", persona: "pirate" })).body.success).toBe(true);

    // Kill the child as soon as one of its model calls is in flight (bounded watch).
    let killedAt = -1;
    const watch = (async () => {
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        if (fake.chats().some((r) => r.body?.model === "child-model")) {
          killedAt = fake.chats().length;
          child!.kill("SIGKILL");
          return;
        }
        await sleep(5);
      }
    })();
    const outcomes = await runLoad(40, 10, (i) => chat(nc, `k${i}`, `#k${i % 4}`, `kill question ${i}`, 3_000));
    await watch;
    expect(killedAt).toBeGreaterThan(0);
    expect(child!.signalCode).toBe("SIGKILL");
    const s = summarize(outcomes);
    console.log("instance killed", s);
    expect(s.ok + s.error + s.clientError).toBe(40);
    // What the dead process held times out at the client; nothing is answered wrongly.
    expect(s.clientError).toBeGreaterThanOrEqual(1);
    for (const [i, o] of outcomes.entries()) if (o.kind === "ok") expect(o.body.content).toMatch(new RegExp(`kill question ${i}$`));

    // Everything after the kill is answered by the survivor.
    const before = survivor.stats.get("chat")!.num_requests;
    const after = await runLoad(20, 5, (i) => chat(nc, `s${i}`, "#k0", `survivor question ${i}`, 5_000));
    expect(summarize(after).ok).toBe(20);
    expect(survivor.stats.get("chat")!.num_requests - before).toBe(20);
    for (const o of after) expect((o as { body: any }).body.persona).toBe("pirate");

    // State: every key parses; personas, usage and limits still answer.
    expect(await allStateParses(nc)).toBeGreaterThan(0);
    expect((await request(nc, "rosey.llm.persona.get", { channel: "#k0" })).body.persona.name).toBe("pirate");
    expect((await request(nc, "rosey.llm.persona.list", {})).body.success).toBe(true);
    expect((await request(nc, "rosey.llm.usage", { user: "s1" })).body).toMatchObject({ success: true, requests_today: 1 });
  }, 90_000);
});

describe("KV compare-and-set storm on one hot key", () => {
  let srv: TestServer;
  const instances: TestInstance[] = [];
  let nc: NatsConnection;

  beforeAll(async () => {
    srv = await startTestServer();
    const limits = { user_per_minute: 1_000, user_per_hour: 1_000, user_per_day: 1_000, channel_per_hour: 1_000, user_tokens_per_day: 10_000_000 };
    // Frozen clock: the windows and the usage day cannot roll over mid-storm.
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) instances.push(await startInstance(srv.url, { limits: limits as never }, { clock: { now: () => t0 } }));
    nc = await resilientClient(srv.url);
  });

  afterAll(async () => {
    await nc?.close();
    await Promise.allSettled(instances.map((s) => s.stop()));
    await srv?.cleanup();
  }, 30_000);

  it("answers 200 simultaneous chats of one user in one channel, with exact counters", async () => {
    const TOTAL = 200;
    const user = "storm-user";
    const channel = "#storm";
    const started = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: TOTAL }, (_, i) => chat(nc, user, channel, `storm ${i}`, 30_000)),
    );
    const ms = Date.now() - started;
    const s = summarize(outcomes);
    const served = instances.map((x) => x.stats.get("chat")!.num_requests);
    const retries = instances.map((x) => (x.ctx.limiter as unknown as { stats: { casRetries: number } }).stats.casRetries);
    console.log(`CAS storm: ${TOTAL} chats in ${ms} ms`, s, { servedPerInstance: served, limiterCasRetries: retries });
    expect(s.ok).toBe(TOTAL);
    expect(outcomes.filter((o, i) => wrongOffline(o, user, `storm ${i}`))).toEqual([]);
    const tokens = outcomes.reduce((a, o) => a + (o as { body: any }).body.tokens_used, 0);

    // Usage counts every success once, for the user and for the channel (a channel's usage is
    // written within a second; once their summaries are done, instances write theirs at once).
    await Promise.all(instances.map((x) => (x.ctx.memory as unknown as { settled(): Promise<void> }).settled()));
    await Promise.all(instances.map((x) => (x.ctx.limiter as RuntimeLimiter).close()));
    const u = (await request(nc, "rosey.llm.usage", { user })).body;
    const c = (await request(nc, "rosey.llm.usage", { channel })).body;
    // The channel's also counts the history summaries the storm caused (the service's own calls).
    const sys = (await request(nc, "rosey.llm.usage", { user: SYSTEM_USER })).body;
    expect(sys.requests_today).toBeGreaterThan(0);
    expect(u).toMatchObject({ success: true, requests_today: TOTAL, tokens_today: tokens });
    expect(c).toMatchObject({ success: true, requests_today: TOTAL + sys.requests_today, tokens_today: tokens + sys.tokens_today });

    // The limiter's windows hold exactly one entry per request, and no reservation is left over.
    const kv = await nc.jetstream().views.kv(BUCKETS.limits);
    const udoc = JSON.parse(dec.decode((await kv.get(key("u", encodeName(user))))!.value)) as UserDoc;
    // A channel's document lies among the channel's memory keys.
    const memory = await nc.jetstream().views.kv(BUCKETS.memory);
    const cdoc = JSON.parse(dec.decode((await memory.get(key("l", encodeName(channel), "doc")))!.value)) as ChannelDoc;
    expect(udoc.l).toHaveLength(TOTAL);
    expect(udoc.d).toMatchObject({ n: TOTAL, q: TOTAL, u: tokens });
    expect(udoc.r).toEqual({});
    expect(cdoc.l).toHaveLength(TOTAL);
  }, 90_000);
});

describe("a compare-and-set write whose acknowledgement is lost", () => {
  let srv: TestServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    srv = await startTestServer();
    nc = await connect({ servers: srv.url });
  });

  afterAll(async () => {
    await nc?.close();
    await srv?.cleanup();
  });

  it("is retried and stored once, and a retried create does not conflict with itself", async () => {
    const js = nc.jetstream();
    const raw = await js.views.kv("CAS_RETRY", { history: 1 });
    // The first publish of each write reaches the stream, then its ack is "lost": the caller
    // sees a timeout. The retry is answered "duplicate", or (servers that check the expected
    // revision first) a conflict with the write itself.
    let lost = 0;
    const seen = new Set<string>();
    const flaky = new Proxy(js, {
      get(target, prop) {
        if (prop !== "publish") return Reflect.get(target, prop).bind(target);
        return async (...args: Parameters<typeof js.publish>) => {
          const ack = await target.publish(...args);
          const id = args[2]!.msgID!;
          if (!seen.has(id)) {
            seen.add(id);
            lost++;
            throw Object.assign(new Error("TIMEOUT"), { code: "TIMEOUT" });
          }
          return ack;
        };
      },
    });
    const kv = leaderTolerant(raw, flaky, "CAS_RETRY", 5_000);
    const enc = new TextEncoder();
    const r1 = await kv.create("k", enc.encode('{"n":1}'));
    const r2 = await kv.update("k", enc.encode('{"n":2}'), r1);
    expect(lost).toBe(2); // each write: one stored-but-unacknowledged attempt
    const e = await raw.get("k");
    expect(e?.revision).toBe(r2);
    expect(e?.json()).toEqual({ n: 2 });
    // Two writes, two messages: the retries were dropped as duplicates.
    expect((await raw.status()).values).toBe(1);
    expect((await nc.jetstreamManager().then((m) => m.streams.info("KV_CAS_RETRY"))).state.last_seq).toBe(2);
    // A stale revision is still a conflict, not a retry.
    await expect(kv.update("k", enc.encode('{"n":3}'), r1)).rejects.toMatchObject({ api_error: { err_code: 10071 } });
  });
});
