// `rosey-llm usage`: the usage bucket as a table — one row per day, user / channel / the
// whole service, and provider — read straight from KV, since the `usage` endpoint answers
// for today only. Keys are matched with the layouts of lib/keys/layout.ts.
import type { NatsConnection } from "nats";
import type { Config } from "../lib/config";
import { BUCKET_LAYOUTS, keyFilter, parseKey } from "../lib/keys/layout";
import { calendar } from "../lib/limiter/calendar";
import { natsKv } from "./kv";
import { BUCKETS } from "./provision";
import { formatTable } from "./table";

export interface UsageQuery {
  user?: string;
  channel?: string;
  /** Days back from today (1 = today only). */
  days: number;
  /** Now in ms (injectable for tests). */
  now?: number;
}

/** What one usage key stores (lib/usage). */
interface UsageDoc {
  requests: number;
  tokens: number;
  by_provider?: Record<string, { requests: number; tokens: number }>;
}

const LAYOUT = BUCKET_LAYOUTS.usage.keys;
const SCOPES = [
  ["service", LAYOUT.instance.key],
  ["channel", LAYOUT.channel.key],
  ["user", LAYOUT.user.key],
] as const;

type Row = [day: string, scope: string, name: string, provider: string, requests: number, tokens: number];

/** The rows for a query, newest day first; the service's rows sum the instances' shares. */
export async function usageRows(nc: NatsConnection, config: Config, q: UsageQuery): Promise<Row[]> {
  const js = nc.jetstream();
  let bucket;
  try {
    bucket = await js.views.kv(BUCKETS.usage, { bindOnly: true });
  } catch {
    throw new Error(`no usage bucket ${BUCKETS.usage} on this NATS: has the service run here?`);
  }
  const kv = natsKv(bucket, BUCKETS.usage, await nc.jetstreamManager());
  // A named user or channel: their keys only; otherwise every user, channel and the service.
  const named = [
    ...(q.user !== undefined ? [keyFilter(LAYOUT.user.key, { user: q.user })] : []),
    ...(q.channel !== undefined ? [keyFilter(LAYOUT.channel.key, { channel: q.channel })] : []),
  ];
  const filters = named.length ? named : SCOPES.map(([, layout]) => keyFilter(layout));
  const cal = calendar(config.timezone);
  const now = q.now ?? Date.now();
  const since = cal.date(now - (q.days - 1) * 86_400_000);

  const keys = (await Promise.all(filters.map((f) => kv.keys(f)))).flat();
  const totals = new Map<string, Row>();
  await Promise.all(
    keys.map(async (k) => {
      const match = SCOPES.map(([scope, layout]) => ({ scope, parts: parseKey(layout, k) })).find((m) => m.parts);
      if (!match?.parts || match.parts.day < since) return;
      const entry = await kv.get(k);
      if (!entry) return;
      const doc = JSON.parse(new TextDecoder().decode(entry.value)) as UsageDoc;
      const name = match.scope === "service" ? "*" : (match.parts.user ?? match.parts.channel);
      for (const [provider, v] of Object.entries(doc.by_provider ?? {})) {
        const id = [match.parts.day, match.scope, name, provider].join("\n");
        const row = totals.get(id) ?? [match.parts.day, match.scope, name, provider, 0, 0];
        row[4] += v.requests;
        row[5] += v.tokens;
        totals.set(id, row);
      }
    }),
  );
  const order = (s: string) => SCOPES.findIndex(([scope]) => scope === s);
  return [...totals.values()].sort(
    (a, b) =>
      b[0].localeCompare(a[0]) || order(a[1]) - order(b[1]) || a[2].localeCompare(b[2]) || a[3].localeCompare(b[3]),
  );
}

/** The usage table as text. */
export async function usageTable(nc: NatsConnection, config: Config, q: UsageQuery): Promise<string> {
  const rows = await usageRows(nc, config, q);
  if (rows.length === 0) return `no usage recorded in the last ${q.days} day(s)`;
  return formatTable(["DAY", "SCOPE", "NAME", "PROVIDER", "REQUESTS", "TOKENS"], rows);
}
