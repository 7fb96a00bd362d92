// The command line: `start` as a real child process (embedded nats-server, SIGTERM leaves
// nothing behind), and ls / info / req / events / usage / top and every command's help
// in-process against a test server.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { connect } from "nats";
import { main } from "../runtime/cli";
import { top } from "../runtime/cli-top";
import { loadConfig } from "../lib/config";
import { encodeName } from "../lib/keys";
import { calendar } from "../lib/limiter";
import { BUCKETS } from "../runtime/provision";
import { ENDPOINTS } from "../lib/subjects";
import { startEmbedded, urlFile } from "../runtime/embedded";
import { createLogger } from "../lib/log";
import { mkdirSync, writeFileSync } from "node:fs";
import { parseSince } from "../runtime/replay";
import { startTestServer, type TestServer } from "./helpers/nats";
import { request, startInstance, type TestInstance } from "./helpers/service";

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("rosey-llm start without NATS_URL", () => {
  it("runs an embedded nats-server, answers, and leaves nothing behind after SIGTERM", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "rosey-llm-embedded-"));
    const env = { ...process.env, ROSEY_DATA_DIR: dataDir, LOG_LEVEL: "info" } as Record<string, string>;
    delete env.NATS_URL;
    const child = spawn(process.execPath, ["dist/runtime/cli.js", "start"], { env, stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    const ready = new Promise<void>((resolve, reject) => {
      child.stderr!.on("data", (d: Buffer) => {
        log += d.toString();
        if (log.includes('"msg":"ready"')) resolve();
      });
      child.once("exit", (code) => reject(new Error(`exited ${code}: ${log}`)));
    });
    await ready;
    const started = log.split("\n").map((l) => (l ? JSON.parse(l) : {})).find((l) => l.msg === "embedded nats-server started");
    expect(started.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(readFileSync(join(dataDir, "nats.url"), "utf8").trim()).toBe(started.url);
    expect(alive(started.pid)).toBe(true);

    const nc = await connect({ servers: started.url });
    const r = await request(nc, "rosey.llm.chat", { channel: "#x", user: "y", message: "hello" });
    expect(r.body).toMatchObject({ success: true, provider: "offline" });
    // The bundle finds the synonym table build.mjs put beside it: a paraphrase is recalled.
    await request(nc, "rosey.llm.memory.add", { channel: "#x", content: "Bob loves old horror movies" });
    await request(nc, "rosey.llm.memory.add", { channel: "#x", content: "Bob works at a bank" });
    const recalled = await request(nc, "rosey.llm.memory.recall", { channel: "#x", query: "which films does bob enjoy?" });
    expect(recalled.body.memories[0]).toBe("Bob loves old horror movies");
    await nc.close();

    const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(alive(started.pid)).toBe(false);
    expect(existsSync(join(dataDir, "nats.url"))).toBe(false);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("stops with one clear message on bad configuration", async () => {
    const child = spawn(process.execPath, ["dist/runtime/cli.js", "start"], {
      env: { ...process.env, ROSEY_LIMIT_USER_PER_MINUTE: "lots" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    const code = await new Promise((res) => child.once("exit", res));
    expect(code).toBe(2);
    expect(err.trim()).toMatch(/^rosey-llm: invalid setting ROSEY_LIMIT_USER_PER_MINUTE/);
    expect(err.trim().split("\n")).toHaveLength(1);
  });
});

describe("embedded nats-server", () => {
  it("writes its URL for the CLI, stops a server a killed run left behind, and cleans up", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "rosey-llm-embedded-"));
    // A server a previous run left behind, recorded in the pid file.
    const stale = await startTestServer();
    mkdirSync(join(dataDir, "nats"), { recursive: true });
    writeFileSync(join(dataDir, "nats", "nats-server.pid"), String(stale.pid));
    const lines: string[] = [];
    const server = await startEmbedded(dataDir, createLogger("debug", {}, (l) => lines.push(l)));
    try {
      await new Promise((r) => setTimeout(r, 100));
      expect(alive(stale.pid)).toBe(false);
      expect(lines.some((l) => l.includes("left behind"))).toBe(true);
      expect(readFileSync(urlFile(dataDir), "utf8").trim()).toBe(server.url);
      const nc = await connect({ servers: server.url });
      expect(nc.info?.jetstream).toBe(true);
      await nc.close();
    } finally {
      await server.stop();
      await stale.cleanup();
    }
    expect(existsSync(urlFile(dataDir))).toBe(false);
    expect(alive(server.pid)).toBe(false);
    rmSync(dataDir, { recursive: true, force: true });
  });
});

/** Every command and the flags its help must list. */
const FLAGS: Record<string, string[]> = {
  start: [],
  ls: [],
  info: ["--verbose"],
  req: [],
  events: ["--since", "--seq", "--type", "--follow", "--json"],
  usage: ["--user", "--channel", "--days"],
  top: ["--interval", "--once"],
};

describe("client commands", () => {
  let srv: TestServer;
  let inst: TestInstance;
  let lines: string[];
  let errLines: string[];

  beforeAll(async () => {
    srv = await startTestServer();
    inst = await startInstance(srv.url);
    vi.stubEnv("NATS_URL", srv.url);
    vi.stubEnv("LOG_LEVEL", "silent");
  });
  afterAll(async () => {
    vi.unstubAllEnvs();
    await inst?.stop();
    await srv?.cleanup();
  });

  const run = async (...argv: string[]) => {
    lines = [];
    errLines = [];
    const o = vi.spyOn(process.stdout, "write").mockImplementation((s) => (lines.push(String(s)), true));
    const e = vi.spyOn(process.stderr, "write").mockImplementation((s) => (errLines.push(String(s)), true));
    try {
      return await main(argv);
    } finally {
      o.mockRestore();
      e.mockRestore();
    }
  };

  it("req sends a request and prints the reply; errors exit 1 with the header", async () => {
    expect(await run("req", "chat", '{"channel":"#cli","user":"u","message":"hi cli"}')).toBe(0);
    expect(JSON.parse(lines.join(""))).toMatchObject({ success: true, provider: "offline" });
    expect(await run("req", "chat", '{"channel":"#cli"}')).toBe(1);
    expect(errLines.join("")).toMatch(/error 400/);
    expect(await run("req", "nope")).toBe(2);
    expect(errLines.join("")).toMatch(/name an endpoint: chat, complete/);
  });

  it("ls lists the running instance with its counts", async () => {
    expect(await run("ls")).toBe(0);
    const text = lines.join("");
    expect(text).toContain(inst.id);
    expect(text).toMatch(/1 instance\(s\)/);
  });

  it("info lists every endpoint with its subject and queue group; -v adds both JSON Schemas", async () => {
    expect(await run("info", "-v")).toBe(0);
    const text = lines.join("");
    expect(text).toMatch(/chat\s+rosey\.llm\.chat\s+queue=rosey-llm/);
    expect(text).toMatch(/memory_recall\s+rosey\.llm\.memory\.recall/);
    const schemas = (kind: string) => [...text.matchAll(new RegExp(`^  ${kind}: +(.*)$`, "gm"))].map((m) => JSON.parse(m[1]));
    expect(schemas("request")).toHaveLength(Object.keys(ENDPOINTS).length);
    expect(schemas("response")).toHaveLength(Object.keys(ENDPOINTS).length);
    expect(schemas("response").every((s) => s.properties.success)).toBe(true);
    expect(await run("info")).toBe(0);
    expect(lines.join("")).not.toMatch(/response:/);
  });

  it("usage prints a row per day, user and provider for a user who chatted", async () => {
    await run("req", "chat", '{"channel":"#usage","user":"dora the explorer","message":"count me"}');
    expect(await run("usage", "--user", "dora the explorer")).toBe(0);
    const text = lines.join("");
    expect(text).toMatch(/^DAY\s+SCOPE\s+NAME\s+PROVIDER\s+REQUESTS\s+TOKENS$/m);
    expect(text).toMatch(/^\d{4}-\d\d-\d\d\s+user\s+dora the explorer\s+offline\s+1\s+[1-9]\d*$/m);
    // A channel's usage is written within 1.5 s of the call: ask until it is there.
    expect(await run("usage")).toBe(0);
    for (let i = 0; i < 40 && !/\schannel\s+#usage\s/.test(lines.join("")); i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect(await run("usage")).toBe(0);
    }
    const all = lines.join("");
    expect(all).toMatch(/\suser\s+dora the explorer\s+offline\s+1\s/);
    expect(all).toMatch(/\schannel\s+#usage\s+offline\s+1\s/);
    expect(all).toMatch(/\sservice\s+\*\s+offline\s+\d+\s/);
    expect(await run("usage", "--channel", "#nobody-here")).toBe(0);
    expect(lines.join("")).toMatch(/no usage recorded in the last 7 day/);
  });

  it("usage shows a channel's today from its document in the memory bucket, from one left in the limits bucket, and once when both are there", async () => {
    const nc = await connect({ servers: srv.url });
    const today = calendar(loadConfig({ NATS_URL: srv.url }).timezone).date(Date.now());
    const doc = (requests: number, tokens: number) =>
      new TextEncoder().encode(JSON.stringify({ l: [Date.now()], d: { w: today, q: requests, u: tokens, p: { offline: [requests, tokens] } } }));
    await (await nc.jetstream().views.kv(BUCKETS.memory)).put(`l.${encodeName("#moved here")}.doc`, doc(3, 42));
    await (await nc.jetstream().views.kv(BUCKETS.limits)).put(`c.${encodeName("#left behind")}`, doc(2, 17));
    // Moved, with the old copy not yet deleted: counted once, as moved.
    await (await nc.jetstream().views.kv(BUCKETS.memory)).put(`l.${encodeName("#both")}.doc`, doc(5, 60));
    await (await nc.jetstream().views.kv(BUCKETS.limits)).put(`c.${encodeName("#both")}`, doc(2, 17));
    await nc.close();
    expect(await run("usage", "--channel", "#moved here")).toBe(0);
    expect(lines.join("")).toMatch(new RegExp(`^${today}\\s+channel\\s+#moved here\\s+offline\\s+3\\s+42$`, "m"));
    expect(await run("usage")).toBe(0);
    const all = lines.join("");
    expect(all).toMatch(new RegExp(`^${today}\\s+channel\\s+#moved here\\s+offline\\s+3\\s+42$`, "m"));
    expect(all).toMatch(new RegExp(`^${today}\\s+channel\\s+#left behind\\s+offline\\s+2\\s+17$`, "m"));
    expect(all).toMatch(new RegExp(`^${today}\\s+channel\\s+#both\\s+offline\\s+5\\s+60$`, "m"));
  });

  it("top --once shows every endpoint with its rate and the provider's health", async () => {
    expect(await run("top", "--once", "--interval", "0.2")).toBe(0);
    const text = lines.join("");
    expect(text).toMatch(/^ENDPOINT\s+REQ\/S\s+AVG MS\s+REQUESTS\s+ERRORS\s+LAST ERROR$/m);
    for (const name of Object.keys(ENDPOINTS)) expect(text).toMatch(new RegExp(`^${name}\\s+\\d+\\.\\d\\s`, "m"));
    expect(text).toMatch(/^offline\s+offline-echo-1\s+ok\s+0\s+-$/m);
    expect(text).not.toContain("\x1b[");
  });

  it("top refreshes in place until stopped", async () => {
    const frames: string[] = [];
    const ac = new AbortController();
    const nc = await connect({ servers: srv.url });
    const config = loadConfig({ NATS_URL: srv.url });
    await top(nc, config, {
      intervalMs: 50,
      once: false,
      signal: ac.signal,
      write: (t) => (frames.push(t), frames.length === 2 && ac.abort()),
    });
    await nc.close();
    expect(frames).toHaveLength(2);
    for (const f of frames) expect(f.startsWith("\x1b[H\x1b[2J")).toBe(true);
    expect(frames[1]).toMatch(/^persona_list\s/m);
  });

  it.each(Object.entries(FLAGS))("%s --help exits 0 and lists its flags", async (command, flags) => {
    expect(await run(command, "--help")).toBe(0);
    const help = lines.join("");
    expect(help).toMatch(new RegExp(`^Usage: rosey-llm ${command}`));
    for (const f of [...flags, "--help"]) expect(help).toMatch(new RegExp(`^ +(-\\w, )?${f}\\b.*\\S`, "m"));
    expect(await run("help", command)).toBe(0);
    expect(lines.join("")).toBe(help);
  });

  it("refuses an unknown flag or a bad value with the command's help, exit 2", async () => {
    expect(await run("usage", "--colour", "red")).toBe(2);
    expect(errLines.join("")).toMatch(/usage: Unknown option '--colour'[\s\S]*Usage: rosey-llm usage/);
    expect(await run("top", "--interval", "soon")).toBe(2);
    expect(errLines.join("")).toMatch(/--interval must be a number/);
  });

  it("events replays the stream, filtered by type", async () => {
    await run("req", "chat", '{"channel":"#ev","user":"u","message":"for the stream"}');
    await inst.ctx.events.flush();
    expect(await run("events", "--since", "1h", "--type", "response", "--json")).toBe(0);
    const events = lines.join("").trim().split("\n").map((l) => JSON.parse(l));
    expect(events.length).toBeGreaterThanOrEqual(1);
    expect(events.every((e) => e.event === "response")).toBe(true);
    expect(events.some((e) => e.channel === "#ev")).toBe(true);
    expect(await run("events", "--since", "1h")).toBe(0);
    expect(lines.join("")).toMatch(/response\s+\{/);
  });

  it("help, version and unknown commands", async () => {
    expect(await run("--help")).toBe(0);
    const help = lines.join("");
    for (const [command, flags] of Object.entries(FLAGS)) {
      expect(help).toMatch(new RegExp(`^  ${command}\\b`, "m"));
      for (const f of flags) expect(help).toContain(f);
    }
    expect(await run("help")).toBe(0);
    expect(lines.join("")).toBe(help);
    expect(await run("version")).toBe(0);
    expect(await run("frobnicate")).toBe(2);
    expect(errLines.join("")).toMatch(/unknown command/);
    expect(await run()).toBe(2);
  });

  it("parses --since as a duration or a date", () => {
    const now = Date.parse("2026-01-01T12:00:00Z");
    expect(parseSince("1h", now).toISOString()).toBe("2026-01-01T11:00:00.000Z");
    expect(parseSince("30m", now).toISOString()).toBe("2026-01-01T11:30:00.000Z");
    expect(parseSince("2026-01-01T00:00:00Z").toISOString()).toBe("2026-01-01T00:00:00.000Z");
    expect(() => parseSince("yesterday-ish")).toThrow(/--since/);
  });
});
