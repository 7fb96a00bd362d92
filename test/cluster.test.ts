// A 3-node JetStream cluster on loopback: state provisioned with 3 replicas, one service
// instance pinned to each node, and a node SIGKILLed in the middle of a few hundred chats.
//
// What is claimed, and why it can be claimed:
// - Every request settles: a JSON reply (success or a clean `success:false` with an
//   error_code) or a client-side error (timeout / no responders) within the client timeout.
//   A successful reply is always the answer to its own request (the offline provider echoes
//   the unique message).
// - No event id is stored twice: every event carries Nats-Msg-Id = id; a publish retried
//   across the leader change is dropped by the stream's dedupe window.
// - Limiter exactness across the kill, for a user with per-minute limit N sending M > N:
//   the stored minute counter never exceeds N and successes ≤ counter. A request can fail
//   after its admission was written (the write committed but its ack was lost with the
//   node, or a later step failed): it then keeps its slot — it is counted and not served —
//   so the guarantee is "admitted ≤ N" and "successes + failed-midway ≥ counter"; when no
//   request of that user failed, successes are exactly N.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JetStreamManager, NatsConnection } from "nats";
import { connect } from "nats";
import { encodeName, key } from "../lib/keys";
import type { UserDoc } from "../lib/limiter";
import { createLogger } from "../lib/log";
import { EVENTS_STREAM, BUCKETS } from "../runtime/provision";
import { replayEvents } from "../runtime/replay";
import type { RunningService } from "../runtime/service";
import {
  outcomeOf,
  rotate,
  runLoad,
  startCluster,
  startPinnedInstance,
  summarize,
  type Outcome,
  type TestCluster,
} from "./helpers/cluster";
import { request } from "./helpers/service";

const N = 20; // per-minute limit of every user
const STREAMS = [EVENTS_STREAM, ...Object.values(BUCKETS).map((b) => `KV_${b}`)];
const CLIENT_TIMEOUT_MS = 15_000;

// The limiter's windows follow this clock: frozen, so the test never straddles a minute.
const t0 = Date.now();
const clock = { now: () => t0 };

const config = {
  replicas: 3,
  limits: { user_per_minute: N, user_per_hour: 1_000, user_per_day: 1_000 } as never,
  service: { handler_timeout_ms: 10_000 } as never,
};

let cluster: TestCluster;
/** Warnings and errors the instances logged. */
const logs: string[] = [];
let instances: RunningService[] = [];
const clients: NatsConnection[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function clientOn(url: string): Promise<NatsConnection> {
  const nc = await connect({ servers: [url], name: "cluster-test-client", maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  clients.push(nc);
  return nc;
}

/** Waits until the stream has a leader and every follower is current (bounded). */
async function waitHealthy(jsm: JetStreamManager, name: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const info = await jsm.streams.info(name);
      const reps = info.cluster?.replicas ?? [];
      if (info.cluster?.leader && reps.length === 2 && reps.every((r) => r.current && !r.offline)) return info;
    } catch {
      /* no leader yet: ask again */
    }
    if (Date.now() > deadline) throw new Error(`${name} not healthy within ${timeoutMs} ms`);
    await sleep(200);
  }
}

const chat = (nc: NatsConnection, user: string, channel: string, message: string) =>
  outcomeOf(request(nc, "rosey.llm.chat", { user, channel, message }, CLIENT_TIMEOUT_MS));

/** A success must be the echo of its own turn (the offline model repeats "user: message"). */
const wrongAnswer = (o: Outcome, user: string, message: string) =>
  o.kind === "ok" && o.body.content !== `[offline] ${user}: ${message}`;

beforeAll(async () => {
  cluster = await startCluster();
  // A first deployment with one replica: the instances below must raise it to three.
  const single = await startPinnedInstance(cluster.urls, { replicas: 1 }, { clock });
  await single.stop();
  // Started one after another so the first provisions and the others find it in place.
  for (let i = 0; i < 3; i++) {
    const log = createLogger("warn", { node: `n${i + 1}` }, (l) => logs.push(l));
    instances.push(await startPinnedInstance(rotate(cluster.urls, i), config, { clock, log }));
  }
}, 60_000);

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await Promise.allSettled(instances.map((s) => s.stop()));
  await cluster?.cleanup();
}, 60_000);

describe("rosey-llm on a 3-node cluster", () => {
  it("raises the events stream and every KV bucket of an R1 deployment to 3 replicas", async () => {
    const nc = await clientOn(cluster.urls[0]);
    const jsm = await nc.jetstreamManager();
    for (const name of STREAMS) {
      const info = await waitHealthy(jsm, name);
      expect(info.config.num_replicas, name).toBe(3);
      expect(info.cluster?.replicas?.length, name).toBe(2);
    }
  });

  it("survives a node SIGKILLed mid-load and recovers when it returns", async () => {
    const nc0 = await clientOn(cluster.urls[0]);
    const jsm0 = await nc0.jetstreamManager();
    // The victim hosts the events stream's leader, and one instance is pinned to it.
    const victim = (await jsm0.streams.info(EVENTS_STREAM)).cluster!.leader!;
    const survivor = cluster.nodes.find((n) => n.name !== victim)!;
    const nc = await clientOn(survivor.url);

    const TOTAL = 300;
    const KILL_AT = 90;
    const hot = "hot-user";
    const messages: string[] = [];
    const users: string[] = [];
    let killedAfter = -1;
    const started = Date.now();
    const outcomes = await runLoad(
      TOTAL,
      12,
      (i) => {
        const isHot = i % 7 === 3;
        const user = isHot ? hot : `u${i % 30}`;
        const channel = isHot ? "#hot" : `#c${i % 10}`;
        const message = `question ${i} from ${user}`;
        users[i] = user;
        messages[i] = message;
        return chat(nc, user, channel, message);
      },
      async (done) => {
        if (done === KILL_AT) {
          killedAfter = done;
          await cluster.kill(victim);
        }
      },
    );
    const loadMs = Date.now() - started;
    expect(killedAfter).toBe(KILL_AT);

    const all = summarize(outcomes);
    const hotIdx = outcomes.map((_, i) => i).filter((i) => users[i] === hot);
    const hotSum = summarize(hotIdx.map((i) => outcomes[i]));
    const restSum = summarize(outcomes.filter((_, i) => users[i] !== hot));
    console.log(`cluster load: ${TOTAL} chats in ${loadMs} ms, node ${victim} killed after ${KILL_AT}`, { all, hot: hotSum, rest: restSum });

    // Every request settled, and no success answered another request.
    expect(all.ok + all.error + all.clientError).toBe(TOTAL);
    expect(outcomes.filter((o, i) => wrongAnswer(o, users[i], messages[i]))).toEqual([]);
    // Error replies are clean contract errors.
    for (const o of outcomes) if (o.kind === "error") expect(o.body).toMatchObject({ success: false, error_code: expect.any(String), error: expect.any(String) });
    // Ordinary users were never at their limit: none of them was refused.
    expect(restSum.byCode.rate_limited ?? 0).toBe(0);

    // Limiter exactness for the hot user (see the header for what is claimed).
    const limits = await (await nc.jetstream()).views.kv(BUCKETS.limits);
    const doc = JSON.parse(new TextDecoder().decode((await limits.get(key("u", encodeName(hot))))!.value));
    const counted = (doc as UserDoc).l!.length;
    const failedMidway = hotSum.error - (hotSum.byCode.rate_limited ?? 0) + hotSum.clientError;
    console.log("hot user", { sent: hotIdx.length, limit: N, succeeded: hotSum.ok, refused: hotSum.byCode.rate_limited ?? 0, failedMidway, counted });
    expect(hotIdx.length).toBeGreaterThan(N);
    expect(counted).toBeLessThanOrEqual(N);
    expect(hotSum.ok).toBeLessThanOrEqual(counted);
    expect(hotSum.ok + failedMidway).toBeGreaterThanOrEqual(counted);
    if (failedMidway === 0) expect(hotSum.ok).toBe(N);

    // The node comes back on the same ports and store; JetStream heals to 3 current replicas.
    const back = Date.now();
    await cluster.restart(victim);
    await cluster.waitForMeta(3);
    for (const name of STREAMS) await waitHealthy(jsm0, name, 60_000);
    console.log(`node ${victim} back and all streams current after ${Date.now() - back} ms`);

    // Flush what the instances still have queued, then replay every stored event.
    await Promise.all(instances.map((s) => s.ctx.events.flush()));
    const ids = new Map<string, number>();
    let responses = 0;
    for await (const e of replayEvents(nc0.jetstream(), { prefix: "rosey" })) {
      const id = String(e.event.id);
      ids.set(id, (ids.get(id) ?? 0) + 1);
      if (e.event.event === "response") responses++;
    }
    const dupes = [...ids].filter(([, n]) => n > 1);
    const stored = (await jsm0.streams.info(EVENTS_STREAM)).state.messages;
    console.log("events", { stored, distinct: ids.size, responses, duplicates: dupes.length });
    expect(dupes).toEqual([]);
    expect(ids.size).toBe(stored);
    // Every success's response event is stored: publishing rides out the leader election.
    // A request that failed after the model call may have one too.
    const givenUp = logs.filter((l) => l.includes("event publish failed")).length;
    expect(givenUp).toBe(0);
    expect(responses).toBeGreaterThanOrEqual(all.ok);
    expect(responses).toBeLessThanOrEqual(all.ok + all.error + all.clientError);

    // Recovery: from a client on every node, fresh users' chats all succeed, and every
    // instance (including the one whose node died) answers some of them.
    const before = instances.map((s) => s.stats.get("chat")!.num_requests);
    const perNode = await Promise.all(cluster.nodes.map((n) => clientOn(n.url)));
    const after = await runLoad(60, 6, (i) => chat(perNode[i % 3], `fresh${i}`, `#after${i % 5}`, `after ${i}`));
    const afterSum = summarize(after);
    const served = instances.map((s, j) => s.stats.get("chat")!.num_requests - before[j]);
    console.log("after recovery", { ...afterSum, servedPerInstance: served });
    expect(afterSum.ok).toBe(60);
    expect(after.filter((o, i) => wrongAnswer(o, `fresh${i}`, `after ${i}`))).toEqual([]);
    for (const n of served) expect(n).toBeGreaterThan(0);
  }, 180_000);
});
