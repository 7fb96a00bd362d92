// `rosey-llm start` as a separate process, the way an operator runs it: environment in, JSON
// log lines out. Resolves once the service logs "ready"; `stop` sends SIGTERM and waits.
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { projectRoot } from "../../runtime/nats-server";

export interface StartedProcess {
  child: ChildProcess;
  /** Every log line so far, parsed. */
  logs(): Array<Record<string, any>>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/** Provider and NATS settings a developer's shell may hold, which a test must not inherit. */
const INHERITED = /^(NATS_|LLM_PROVIDERS$|OPENAI_|OPENROUTER_|OLLAMA_|ROSEY_)/;

export function startProcess(env: Record<string, string>, timeoutMs = 20_000): Promise<StartedProcess> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !INHERITED.test(k) || k === "NATS_SERVER_BIN"));
  const child = spawn(process.execPath, [join(projectRoot, "dist", "runtime", "cli.js"), "start"], {
    env: { ...base, LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let buf = "";
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const started: StartedProcess = {
    child,
    logs: () => buf.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`rosey-llm start did not log ready within ${timeoutMs} ms:\n${buf.slice(-2000)}`));
    }, timeoutMs);
    child.stderr!.on("data", (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('"msg":"ready"')) {
        clearTimeout(timer);
        resolve(started);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`rosey-llm start exited with ${code} before ready:\n${buf.slice(-2000)}`));
    });
  });
}
