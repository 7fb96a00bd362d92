// Structured logs: one JSON object per line, level-filtered.
import type { LogLevel, Logger } from "../context/types";

const RANK: Record<LogLevel | "silent", number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** Field names whose values never reach a log line (keys, passwords, tokens). */
const SECRET = /(api_?key|password|token|secret|authorization|creds)/i;

function scrub(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = SECRET.test(k) && typeof v === "string" ? "[redacted]" : v;
  return out;
}

/** A JSON-lines logger writing to `write` (stderr by default). */
export function createLogger(
  level: LogLevel | "silent" = "info",
  base: Record<string, unknown> = {},
  write: (line: string) => void = (l) => process.stderr.write(l + "\n"),
): Logger {
  const min = RANK[level];
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (RANK[lvl] < min) return;
    const line = { time: new Date().toISOString(), level: lvl, msg, ...scrub(base), ...(fields ? scrub(fields) : {}) };
    write(JSON.stringify(line));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(level, { ...base, ...scrub(fields) }, write),
  };
}

/** A logger that drops everything. */
export const silentLogger: Logger = createLogger("silent");
