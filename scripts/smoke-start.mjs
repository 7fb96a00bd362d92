#!/usr/bin/env node
// Checks the README's start path as a newcomer meets it (CI runs it on its clean clone):
// `npm start` with a temp data dir and a free port for the embedded nats-server, one
// rosey.llm.chat over NATS that must succeed, SIGTERM to npm, and then none of the processes
// it started (the service, its nats-server) may still run. Exits non-zero when any step fails.
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "nats";

const STEP_TIMEOUT_MS = 120_000;

const freePort = () =>
  new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });

/** pid → [parent pid, command line] for every process, from /proc. */
function processTable() {
  const table = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
      table.set(Number(d), [ppid, cmd]);
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/** Every process below `root`, with its command line. */
function descendants(root) {
  const table = processTable();
  const found = new Map();
  const queue = [root];
  while (queue.length) {
    const parent = queue.shift();
    for (const [pid, [ppid, cmd]] of table) {
      if (ppid === parent && !found.has(pid)) found.set(pid, cmd), queue.push(pid);
    }
  }
  return found;
}

/** Whether `pid` still runs the same command (a zombie or a reused pid does not count). */
function stillRunning(pid, cmd) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return false;
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ") === cmd;
  } catch {
    return false;
  }
}

const within = (promise, what) =>
  Promise.race([promise, new Promise((_, rej) => setTimeout(() => rej(new Error(`${what}: no result within ${STEP_TIMEOUT_MS / 1000} s`)), STEP_TIMEOUT_MS).unref())]);

async function smoke() {
  const dataDir = mkdtempSync(join(tmpdir(), "rosey-llm-smoke-"));
  const port = await freePort();
  const env = { ...process.env, ROSEY_DATA_DIR: dataDir, ROSEY_NATS_PORT: String(port), LOG_LEVEL: "info" };
  delete env.NATS_URL;
  const npm = spawn("npm", ["start"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  npm.stdout.on("data", (d) => (output += d));
  npm.stderr.on("data", (d) => (output += d));
  const exited = new Promise((res) => npm.once("exit", (code, signal) => res({ code, signal })));
  let started = new Map();
  try {
    await within(
      new Promise((res, rej) => {
        npm.stderr.on("data", () => output.includes('"msg":"ready"') && res());
        exited.then(({ code }) => rej(new Error(`npm start exited with ${code} before the service was ready`)));
      }),
      "npm start",
    );
    started = descendants(npm.pid);
    const nc = await connect({ servers: `nats://127.0.0.1:${port}`, name: "smoke" });
    try {
      const msg = await nc.request("rosey.llm.chat", JSON.stringify({ channel: "#smoke", user: "ci", message: "hello" }), { timeout: 30_000 });
      const reply = msg.json();
      if (!reply.success || !reply.content) throw new Error(`rosey.llm.chat failed: ${msg.string()}`);
      console.log(`smoke: rosey.llm.chat answered by ${reply.provider}: ${JSON.stringify(reply.content.slice(0, 60))}`);
    } finally {
      await nc.close();
    }
    npm.kill("SIGTERM");
    const { code, signal } = await within(exited, "SIGTERM");
    if (code !== 0) throw new Error(`npm start ended with ${code ?? signal} after SIGTERM, not 0`);
    // The processes may take a moment to be reaped after npm itself is gone.
    const deadline = Date.now() + 5_000;
    let left = [...started].filter(([pid, cmd]) => stillRunning(pid, cmd));
    while (left.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      left = left.filter(([pid, cmd]) => stillRunning(pid, cmd));
    }
    if (left.length) throw new Error(`still running after SIGTERM: ${left.map(([pid, cmd]) => `${pid} ${cmd}`).join("; ")}`);
    const names = [...started].map(([pid, cmd]) => `${cmd.split(" ")[0].split("/").pop()} ${pid}`);
    console.log(`smoke: SIGTERM ended npm start with 0; none of its processes is left (${names.join(", ")})`);
  } catch (err) {
    for (const [pid, cmd] of started) if (stillRunning(pid, cmd)) process.kill(pid, "SIGKILL");
    if (npm.exitCode === null && npm.signalCode === null) npm.kill("SIGKILL");
    throw new Error(`${err.message}\n--- npm start output ---\n${output.slice(-4000)}`);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

smoke().then(
  () => process.exit(0),
  (err) => {
    console.error(`smoke: FAILED: ${err.message}`);
    process.exit(1);
  },
);
