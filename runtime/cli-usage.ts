// `rosey-llm usage`: the usage bucket as a table — one row per day, user / channel / the
// whole service, and provider — read straight from KV, since the `usage` endpoint answers
// for today only. A user's or a channel's last day is still in their limiter document until
// the usage bucket has it (when their next day starts, or the sweep finds it finished:
// lib/limiter/history.ts), so it is read there unless the usage bucket has it already: a
// user's in the limits bucket, a channel's in the memory bucket (and, from before channel
// documents moved there, in the limits bucket until it expires).
// Keys are matched with the layouts of lib/keys/layout.ts.
import type { NatsConnection } from "nats";
import type { Config } from "../lib/config";
import { BUCKET_LAYOUTS, keyFilter, parseKey } from "../lib/keys/layout";
import { historyDoc, type HistoryDoc } from "../lib/limiter/history";
import { calendar } from "../lib/limiter/calendar";
import type { ChannelDoc, UserDoc } from "../lib/limiter";
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

const LAYOUT = BUCKET_LAYOUTS.usage.keys;
/** Where the current days are: the limiter's documents, by scope, bucket and layout. */
const LIVE = [
  ["user", "limits", BUCKET_LAYOUTS.limits.keys.user.key],
  ["channel", "memory", BUCKET_LAYOUTS.memory.keys.channelLimits.key],
  ["channel", "limits", BUCKET_LAYOUTS.limits.keys.channel.key],
] as const;
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
  const jsm = await nc.jetstreamManager();
  const kv = natsKv(bucket, BUCKETS.usage, jsm);
  // A named user or channel: their keys only; otherwise every user, channel and the service.
  const named = [
    ...(q.user !== undefined ? [keyFilter(LAYOUT.user.key, { user: q.user })] : []),
    ...(q.channel !== undefined ? [keyFilter(LAYOUT.channel.key, { channel: q.channel })] : []),
  ];
  const filters = named.length ? named : SCOPES.map(([, layout]) => keyFilter(layout));
  const cal = calendar(config.timezone);
  const now = q.now ?? Date.now();
  const since = cal.date(now - (q.days - 1) * 86_400_000);

  const totals = new Map<string, Row>();
  /** Days of a user or channel read from the usage bucket: their limiter document's copy is not counted again. */
  const kept = new Set<string>();
  const add = (day: string, scope: string, name: string, doc: HistoryDoc) => {
    if (day < since) return;
    for (const [provider, v] of Object.entries(doc.by_provider ?? {})) {
      const id = [day, scope, name, provider].join("\n");
      const row = totals.get(id) ?? [day, scope, name, provider, 0, 0];
      row[4] += v.requests;
      row[5] += v.tokens;
      totals.set(id, row);
    }
  };
  const dec = new TextDecoder();
  const keys = (await Promise.all(filters.map((f) => kv.keys(f)))).flat();
  await Promise.all(
    keys.map(async (k) => {
      const match = SCOPES.map(([scope, layout]) => ({ scope, parts: parseKey(layout, k) })).find((m) => m.parts);
      const entry = match?.parts && match.parts.day >= since ? await kv.get(k) : null;
      if (!match?.parts || !entry) return;
      const name = match.scope === "service" ? "*" : (match.parts.user ?? match.parts.channel);
      kept.add([match.parts.day, match.scope, name].join("\n"));
      add(match.parts.day, match.scope, name, JSON.parse(dec.decode(entry.value)));
    }),
  );
  // The current days of users and channels, from the limiter's documents: a named user's or
  // channel's only, otherwise everyone's. A channel's document is kept in the memory bucket;
  // one still in the limits bucket (written by an earlier version) moves there on the
  // channel's next admission, so it counts only for a channel without a moved one.
  const buckets = {
    limits: natsKv(await js.views.kv(BUCKETS.limits, { bindOnly: true }), BUCKETS.limits, jsm),
    memory: natsKv(await js.views.kv(BUCKETS.memory, { bindOnly: true }), BUCKETS.memory, jsm),
  };
  const wanted = { user: q.user, channel: q.channel };
  const moved = new Set<string>();
  for (const [scope, bucket, layout] of LIVE.filter(([scope]) => !named.length || wanted[scope] !== undefined)) {
    const docs = buckets[bucket];
    const filter = keyFilter(layout, wanted[scope] === undefined ? {} : { [scope]: wanted[scope] });
    await Promise.all(
      (await docs.keys(filter)).map(async (k) => {
        const parts = parseKey(layout, k);
        const name = parts?.[scope];
        if (name === undefined || (scope === "channel" && bucket === "limits" && moved.has(name))) return;
        const entry = await docs.get(k);
        if (entry && scope === "channel" && bucket === "memory") moved.add(name);
        const d = entry && (JSON.parse(dec.decode(entry.value)) as UserDoc | ChannelDoc).d;
        if (d && !kept.has([d.w, scope, name].join("\n"))) add(d.w, scope, name, historyDoc(d));
      }),
    );
  }
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
