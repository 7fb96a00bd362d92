// The examples run as separate processes (as a plugin would) against a real nats-server and a
// runtime instance; the assertions read their output.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "nats";
import { createClient } from "../lib/client";
import { startTestServer, type TestServer } from "./helpers/nats";
import { client, startInstance, type TestInstance } from "./helpers/service";

const ROOT = join(import.meta.dirname, "..");
const CHANNEL = "#examples";
const USER = "example-user";

let srv: TestServer;
let inst: TestInstance;
let nc: NatsConnection;
// The instance's clock stands still. Two requests of the user 58 s before the plugin runs
// fill the rolling minute (limit 3) but for one, so the plugin's second question gets an
// exact retry_after of 2 s; the test moves the clock on when the plugin starts waiting.
let now = 0;

beforeAll(async () => {
  srv = await startTestServer();
  now = Date.parse("2031-01-01T12:00:00Z");
  inst = await startInstance(srv.url, { limits: { user_per_minute: 3 } as never }, { clock: { now: () => now } });
  nc = await client(srv.url);
  const earlier = createClient(nc);
  for (const message of ["warming up", "still warming up"]) {
    expect((await earlier.chat({ channel: "#warmup", user: USER, message })).success).toBe(true);
  }
  now += 58_000;
});

afterAll(async () => {
  await nc?.close();
  await inst?.stop();
  await srv?.cleanup();
});

interface Run {
  code: number | null;
  stdout: string[];
  stderr: string;
}

/** Runs an example with NATS_URL set; `onLine` sees stdout as it comes. Killed after 30 s. */
function runExample(file: string, args: string[], env: Record<string, string> = {}, onLine?: (line: string) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join("examples", file), ...args], {
      cwd: ROOT,
      env: { ...process.env, NATS_URL: srv.url, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const stdout: string[] = [];
    let stderr = "";
    let partial = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${file} did not finish within 30 s; stdout so far:\n${stdout.join("\n")}\n${stderr}`));
    }, 30_000);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      for (const l of lines) {
        stdout.push(l);
        onLine?.(l);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (partial) stdout.push(partial);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("examples/chat-plugin.ts", () => {
  it("chats, and waits out a rate limit for the retry_after it was given", async () => {
    let waited = false;
    const run = await runExample("chat-plugin.ts", ["first question", "second question", "third question"], { CHANNEL, CHAT_USER: USER }, (l) => {
      if (/^rate limited: retrying in/.test(l) && !waited) {
        waited = true;
        now += 2_000; // the wait the plugin was told has passed
      }
    });
    expect(run.code, run.stderr + run.stdout.join("\n")).toBe(0);
    expect(run.stdout).toContain("rate limited: retrying in 2 s");
    const replies = run.stdout.filter((l) => l.startsWith("say: "));
    expect(replies).toHaveLength(3);
    for (const r of replies) expect(r).toContain("[offline]");
    expect(run.stdout.filter((l) => l.startsWith("reply: provider offline"))).toHaveLength(3);
    expect(run.stdout).toContain("done: 3/3 answered");
  });

  it("says so and fails when no service answers", async () => {
    const run = await runExample("chat-plugin.ts", ["anyone there?"], { ROSEY_SUBJECT_PREFIX: "nobody" });
    expect(run.code).toBe(1);
    expect(run.stdout.some((l) => l.startsWith("unavailable: no_responders"))).toBe(true);
    expect(run.stdout).toContain("done: 0/1 answered");
  });
});

describe("examples/replay-events.ts", () => {
  /** Event lines of a run (the summary goes to stderr). */
  const events = (run: Run) => run.stdout.filter((l) => l.startsWith("#"));

  it("replays the chat's response events by time and type", async () => {
    await inst.ctx.events.flush();
    const run = await runExample("replay-events.ts", ["--since", "1h", "--type", "response"]);
    expect(run.code, run.stderr).toBe(0);
    const lines = events(run);
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const l of lines) expect(l).toMatch(/^#\d+ \S+ response /);
    expect(lines.filter((l) => l.includes(` response ${CHANNEL} ${USER} offline/`))).toHaveLength(3);
    expect(run.stderr).toContain(`replayed ${lines.length} event(s)`);
  });

  it("replays the refused request as an error event of type rate_limit", async () => {
    const run = await runExample("replay-events.ts", ["--type", "error"]);
    expect(run.code, run.stderr).toBe(0);
    expect(events(run).filter((l) => l.includes(` error ${CHANNEL} ${USER} rate_limit: `))).toHaveLength(1);
  });

  it("prints raw envelopes with --json", async () => {
    const run = await runExample("replay-events.ts", ["--type", "response", "--json"]);
    const parsed = run.stdout.filter(Boolean).map((l) => JSON.parse(l));
    expect(parsed.length).toBeGreaterThanOrEqual(3);
    for (const e of parsed) expect(e).toMatchObject({ event: "response", version: 1, source: { service: "rosey-llm" } });
  });

  it("with --durable resumes where the previous run stopped", async () => {
    const first = await runExample("replay-events.ts", ["--since", "1h", "--type", "response", "--durable", "example-report"]);
    expect(first.code, first.stderr).toBe(0);
    expect(events(first).length).toBeGreaterThanOrEqual(3);

    const second = await runExample("replay-events.ts", ["--type", "response", "--durable", "example-report"]);
    expect(events(second)).toEqual([]);
    expect(second.stderr).toContain("replayed 0 event(s)");

    const r = await createClient(nc).chat({ channel: CHANNEL, user: "late-user", message: "one more" });
    expect(r.success).toBe(true);
    await inst.ctx.events.flush();
    const third = await runExample("replay-events.ts", ["--type", "response", "--durable", "example-report"]);
    expect(events(third)).toHaveLength(1);
    expect(events(third)[0]).toContain(` response ${CHANNEL} late-user offline/`);
  });
});
