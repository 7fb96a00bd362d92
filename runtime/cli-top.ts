// `rosey-llm top`: what the service is doing now. Every interval it samples $SRV.STATS of
// all instances (summed per endpoint) and the `status` endpoint, and shows per endpoint the
// request rate and average latency between the last two samples, total requests and
// errors, then each provider's health. Rates need two samples, so even `--once` samples
// twice, one interval apart, and prints that one frame. Its own `status` request each
// refresh shows in the status row.
import { RequestStrategy, type NatsConnection } from "nats";
import type { Config } from "../lib/config";
import type { StatusResponse } from "../lib/schemas";
import { endpointSubject } from "../lib/subjects";
import { formatTable } from "./table";

/** Per-endpoint counters summed over instances. */
interface Counters {
  requests: number;
  errors: number;
  /** Nanoseconds. */
  processing: number;
  last_error: string;
}

interface Sample {
  at: number;
  instances: number;
  endpoints: Map<string, Counters>;
  status?: StatusResponse;
}

export interface TopOptions {
  intervalMs: number;
  once: boolean;
  write(text: string): void;
  /** Stops the live view (SIGINT in the CLI). */
  signal?: AbortSignal;
}

/** Moves the cursor home and clears the screen, so each frame replaces the last. */
const CLEAR = "\x1b[H\x1b[2J";

async function sample(nc: NatsConnection, config: Config): Promise<Sample> {
  const client = nc.services.client({ maxWait: 1_000, strategy: RequestStrategy.JitterTimer, jitter: 150 });
  const status = nc
    .request(endpointSubject(config.subject_prefix, "status"), new TextEncoder().encode("{}"), { timeout: 2_000 })
    .then((m) => m.json<StatusResponse>())
    .catch(() => undefined);
  const endpoints = new Map<string, Counters>();
  let instances = 0;
  for await (const s of await client.stats(config.service.name)) {
    instances++;
    for (const e of s.endpoints ?? []) {
      const c = endpoints.get(e.name) ?? { requests: 0, errors: 0, processing: 0, last_error: "" };
      c.requests += e.num_requests;
      c.errors += e.num_errors;
      c.processing += e.processing_time;
      c.last_error ||= e.last_error ?? "";
      endpoints.set(e.name, c);
    }
  }
  return { at: performance.now(), instances, endpoints, status: await status };
}

/** One screen: the endpoint table (rates between `prev` and `cur`), then the providers. */
function renderFrame(prev: Sample, cur: Sample, config: Config): string {
  const secs = Math.max(1e-3, (cur.at - prev.at) / 1000);
  const rows = [...cur.endpoints].sort(([a], [b]) => a.localeCompare(b)).map(([name, c]) => {
    const p = prev.endpoints.get(name);
    const dReq = Math.max(0, c.requests - (p?.requests ?? 0));
    const dNs = Math.max(0, c.processing - (p?.processing ?? 0));
    return [name, (dReq / secs).toFixed(1), dReq ? (dNs / dReq / 1e6).toFixed(2) : "-", c.requests, c.errors, c.last_error.slice(0, 60)];
  });
  const s = cur.status;
  const lines = [
    `${config.service.name}: ${cur.instances} instance(s), rates over the last ${secs.toFixed(1)} s, ${new Date().toISOString()}`,
    s
      ? `status: ${s.healthy ? "healthy" : "unhealthy"}, provider ${s.provider} (${s.model}), today ${s.requests_today} requests, ${s.tokens_today} tokens${s.rate_limited ? ", global budget spent" : ""}`
      : "status: no answer",
    "",
    formatTable(["ENDPOINT", "REQ/S", "AVG MS", "REQUESTS", "ERRORS", "LAST ERROR"], rows),
    "",
    formatTable(
      ["PROVIDER", "MODEL", "HEALTH", "FAILURES", "COOLDOWN UNTIL", "LAST ERROR"],
      (s?.providers ?? []).map((p) => [
        p.name,
        p.model,
        p.healthy ? "ok" : "down",
        p.consecutive_failures ?? 0,
        p.cooldown_until ?? "-",
        (p.last_error ?? "").slice(0, 60),
      ]),
    ),
  ];
  return lines.join("\n");
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

/** Runs the view: one frame with `once`, else a frame per interval until the signal aborts. */
export async function top(nc: NatsConnection, config: Config, opts: TopOptions): Promise<void> {
  let prev = await sample(nc, config);
  while (!opts.signal?.aborted) {
    await sleep(opts.intervalMs, opts.signal);
    if (opts.signal?.aborted) break;
    const cur = await sample(nc, config);
    if (cur.instances === 0) {
      opts.write(`${opts.once ? "" : CLEAR}no ${config.service.name} instances answered\n`);
    } else {
      opts.write(`${opts.once ? "" : CLEAR}${renderFrame(prev, cur, config)}\n`);
    }
    if (opts.once) return;
    prev = cur;
  }
}
