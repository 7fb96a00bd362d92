// A runtime process SIGKILLed while it holds a lease of the global budget and reservations
// of a user's quota: within the bound (a reservation: the request deadline + 10 s; a lease:
// 30 s after its last renewal) another instance sees the pool and the user's quota whole
// again — less what the dead process had settled, which stays spent. The surviving
// instance's clock is moved past the bound instead of waiting for it.
import type { NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RuntimeLimiter } from "../lib/limiter";
import { startTestServer, type TestServer } from "./helpers/nats";
import { startOpenAIServer, type FakeOpenAI } from "./helpers/openai-server";
import { client, request, startInstance, type TestInstance } from "./helpers/service";
import { startProcess, type StartedProcess } from "./helpers/start-process";

const QUOTA = 5_000;
const BUDGET = 200_000;
const limits = { user_tokens_per_day: QUOTA, global_tokens_per_day: BUDGET, exempt_users: ["ops"] };

let srv: TestServer;
let fake: FakeOpenAI;
let runtime: StartedProcess | undefined;
let survivor: TestInstance | undefined;
let nc: NatsConnection;
// The survivor's clock: real time plus what the test moves it by.
let skew = 0;

beforeAll(async () => {
  srv = await startTestServer();
  // Two answers of 17 tokens each, then the model hangs: later calls stay in flight.
  fake = await startOpenAIServer({ default: { kind: "hang" } });
  fake.script({ kind: "reply" }, { kind: "reply" });
  runtime = await startProcess({
    NATS_URL: srv.url,
    LLM_PROVIDERS: "openai",
    OPENAI_BASE_URL: fake.url,
    OPENAI_API_KEY: "sk-heal-test",
    ROSEY_LIMIT_USER_TOKENS_PER_DAY: String(QUOTA),
    ROSEY_LIMIT_GLOBAL_TOKENS_PER_DAY: String(BUDGET),
    ROSEY_EXEMPT_USERS: "ops",
  });
  nc = await client(srv.url);
}, 60_000);

afterAll(async () => {
  await runtime?.stop();
  await nc?.close();
  await survivor?.stop();
  await fake?.close();
  await srv?.cleanup();
}, 30_000);

const ask = (i: number, timeout = 10_000) =>
  request(nc, "rosey.llm.complete", { user: "victim", messages: [{ role: "user", content: `question ${i}` }], max_tokens: 500 }, timeout);

describe("a runtime process SIGKILLed while holding a lease and reservations", () => {
  it("leaves the pool and the user's quota whole again within the bound, its settled spend kept", async () => {
    // Only the child serves yet: two answered calls, then three left in flight.
    const answered = await Promise.all([ask(0), ask(1)]);
    const settled = answered.reduce((n, r) => n + r.body.tokens_used, 0);
    expect(settled).toBe(34);
    const inFlight = [2, 3, 4].map((i) => ask(i, 1_000).catch(() => undefined));
    for (let i = 0; i < 500 && fake.chats().length < 5; i++) await new Promise((r) => setTimeout(r, 10));
    expect(fake.chats()).toHaveLength(5);

    survivor = await startInstance(srv.url, { limits: limits as never }, { clock: { now: () => Date.now() + skew } });
    const quotaLeft = async () => (await survivor!.ctx.limiter.remaining("victim")).tokens_today;
    // What anyone may still reserve of the day's budget: an exempt user sees just that.
    const poolLeft = async () => (await survivor!.ctx.limiter.remaining("ops")).tokens_today;
    const heldQuota = await quotaLeft();
    const heldPool = await poolLeft();
    expect(heldQuota).toBeLessThan(QUOTA - settled - 3 * 500);
    expect(heldPool).toBeLessThan(BUDGET - settled - 3 * 500);

    const { child } = runtime!;
    const dead = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGKILL");
    await dead;
    await Promise.all(inFlight);
    // Nothing comes back by itself before the bound...
    expect(await quotaLeft()).toBe(heldQuota);
    expect(await poolLeft()).toBe(heldPool);

    // ...and everything does after it: the reservations' deadline (30 s) + 10 s, past the
    // lease's 30 s without renewal.
    skew = 41_000;
    expect(await quotaLeft()).toBe(QUOTA - settled);
    expect(await poolLeft()).toBe(BUDGET - settled);

    // The next lease of the survivor takes the dead lease back in the bucket too.
    const r = await request(nc, "rosey.llm.complete", { user: "ops", messages: [{ role: "user", content: "after" }] });
    expect(r.body.success).toBe(true);
    const stats = (survivor.ctx.limiter as RuntimeLimiter).stats;
    for (let i = 0; i < 200 && stats.reclaimed === 0; i++) await new Promise((res) => setTimeout(res, 10));
    expect(stats.reclaimed).toBe(1);
    expect(await poolLeft()).toBe(BUDGET - settled - r.body.tokens_used);
    // The dead process's answers are still in the day's usage.
    const u = (await request(nc, "rosey.llm.usage", { user: "victim" })).body;
    expect(u).toMatchObject({ requests_today: 2, tokens_today: settled, rate_limits_remaining: { tokens_today: QUOTA - settled } });
  }, 60_000);
});
