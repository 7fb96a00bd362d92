// Name isolation, property-based: user and channel names are any text a chat network allows
// (1–200 characters, no control characters, with '.', '*', '>', spaces, emoji), and no name
// can reach another's keys — neither in the encoding nor through the running service.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import type { NatsConnection } from "nats";
import { decodeName, encodeName, key } from "../lib/keys";
import { Name } from "../lib/schemas";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, request, startInstance, type TestInstance } from "./helpers/service";

/** Characters that are syntax somewhere (subjects, keys, paths) or multi-unit in UTF-16. */
const TRICKY = [".", "*", ">", " ", "#", "/", "\\", "$", "=", "_", "-", "a", "b", "é", "😀", "👩‍👩‍👧", "\u200b", "\ufeff", "𝔘"];

/** A valid user or channel name. */
const nameArb = fc
  .string({
    unit: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...TRICKY) }, { weight: 2, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) }),
    minLength: 1,
    maxLength: 80,
  })
  .map((s) => s.replace(/\p{Cc}/gu, "x").slice(0, 200))
  .filter((s) => Name.safeParse(s).success);

/** Pairs of distinct names, with the classic near-collisions always tried first. */
const NEAR: Array<[string, string]> = [
  ["a", "a.b"],
  ["a", ">"],
  ["a.b", "a.*"],
  ["*", ">"],
  ["a b", "a.b"],
  ["#rosey", "#rosey "],
];
const distinctPair = fc.tuple(nameArb, nameArb).filter(([x, y]) => x !== y);

describe("encodeName", () => {
  it("is token-safe and reversible for every valid name", () => {
    fc.assert(
      fc.property(nameArb, (n) => {
        const t = encodeName(n);
        expect(t).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(decodeName(t)).toBe(n);
        expect(key("m", t, "x")).toBe(`m.${t}.x`);
      }),
      { numRuns: 500 },
    );
  });

  it("is injective: different names never share an encoding", () => {
    fc.assert(
      fc.property(distinctPair, ([x, y]) => encodeName(x) !== encodeName(y)),
      { numRuns: 1000, examples: NEAR.map((p) => [p]) },
    );
  });

  it("refuses raw names as key parts, so a name cannot add a token or a wildcard", () => {
    for (const raw of [">", "*", "a.b", "a b"]) expect(() => key("m", raw)).toThrow(/unsafe/);
  });
});

describe("through the service", () => {
  let srv: TestServer;
  let svc: TestInstance;
  let nc: NatsConnection;
  const call = async (name: string, body: unknown) => {
    const r = await request(nc, `rosey.llm.${name}`, body);
    expect(r.code, JSON.stringify(r.body)).toBeUndefined();
    return r.body;
  };

  beforeAll(async () => {
    srv = await startTestServer();
    // Limits high enough never to refuse: the counters are what is compared.
    // Frozen clock: counters compared before and after must sit in the same minute window.
    const now = Date.now();
    svc = await startInstance(
      srv.url,
      { limits: { user_per_minute: 100_000, user_per_hour: 100_000, user_per_day: 100_000, channel_per_hour: 100_000 } as never },
      { clock: { now: () => now } },
    );
    await svc.nc.flush();
    nc = await client(srv.url);
  });
  afterAll(async () => {
    await nc?.close();
    await svc?.stop();
    await srv?.cleanup();
  });

  it("a memory of user A in channel C is never recalled for user B, nor in channel D", async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(distinctPair, distinctPair, async ([userA, userB], [chanC, chanD]) => {
        const word = `zq${++n}x${Date.now().toString(36)}`;
        await call("memory.add", { channel: chanC, user_id: userA, content: `${word} belongs to A only`, importance: 5 });
        const recall = (channel: string, user_id: string) =>
          call("memory.recall", { channel, user_id, query: `${word} belongs`, limit: 50 }).then((b) => JSON.stringify(b.memories));
        expect(await recall(chanC, userA)).toContain(word); // it is there for its owner
        expect(await recall(chanC, userB)).not.toContain(word);
        expect(await recall(chanD, userA)).not.toContain(word);
        expect(await recall(chanD, userB)).not.toContain(word);
      }),
      { numRuns: 25, examples: NEAR.map((p, i) => [p, NEAR[(i + 1) % NEAR.length]]) },
    );
  });

  it("selecting a persona in one channel never changes another's", async () => {
    await fc.assert(
      fc.asyncProperty(distinctPair, fc.constantFrom("concise", "technical"), async ([chanC, chanD], pick) => {
        await call("persona.set", { channel: chanD, persona: "creative" });
        await call("persona.set", { channel: chanC, persona: pick });
        expect((await call("persona.get", { channel: chanD })).persona.name).toBe("creative");
        expect((await call("persona.get", { channel: chanC })).persona.name).toBe(pick);
      }),
      { numRuns: 25, examples: NEAR.map((p) => [p, "technical"] as [[string, string], string]) },
    );
  });

  it("rate-limit counters of different users and channels are independent", async () => {
    const remaining = async (q: { user?: string; channel?: string }) => (await call("usage", q)).rate_limits_remaining;
    await fc.assert(
      fc.asyncProperty(distinctPair, distinctPair, async ([userX, userY], [chanX, chanY]) => {
        const [x0, y0, cy0] = await Promise.all([remaining({ user: userX }), remaining({ user: userY }), remaining({ user: userY, channel: chanY })]);
        const r = await call("chat", { channel: chanX, user: userX, message: "count me" });
        expect(r.success).toBe(true);
        const [x1, y1, cy1] = await Promise.all([remaining({ user: userX }), remaining({ user: userY }), remaining({ user: userY, channel: chanY })]);
        expect(x1.per_minute).toBe(x0.per_minute - 1);
        expect(y1).toEqual(y0);
        expect(cy1.per_hour).toBe(cy0.per_hour);
      }),
      { numRuns: 20, examples: NEAR.map((p, i) => [p, NEAR[(i + 2) % NEAR.length]]) },
    );
  });

  it("`a`, `a.b` and `>` count separately", async () => {
    const remaining = async (user: string) => (await call("usage", { user })).rate_limits_remaining.per_minute as number;
    const names = ["a", "a.b", ">", "*"];
    const before = await Promise.all(names.map(remaining));
    const sends = [3, 2, 1, 0];
    for (const [i, user] of names.entries()) {
      for (let k = 0; k < sends[i]; k++) await call("chat", { channel: "#iso", user, message: "hi" });
    }
    const after = await Promise.all(names.map(remaining));
    expect(after.map((a, i) => before[i] - a)).toEqual(sends);
  });
});
