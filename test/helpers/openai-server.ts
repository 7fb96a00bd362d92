// A real local HTTP server speaking the OpenAI chat-completions API, for provider tests.
// Each /v1/chat/completions request takes the next scripted behaviour (or the default),
// and every request is recorded with its headers and body. A request with `stream: true`
// gets its reply as server-sent events, as OpenAI sends them: a chunk per piece of the
// content, one with the finish reason, one with the usage block when the request asked
// (`stream_options.include_usage`), then `data: [DONE]`.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** Usage block of a reply; `false` leaves it out. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** What the server does with one chat request. */
export type Behaviour =
  /** A normal answer (after `delay_ms` when given: "slow"). `content` defaults to an echo of the last user message. */
  | ({ kind: "reply"; content?: string; usage?: Usage | false; model?: string; finish_reason?: string; delay_ms?: number } & StreamShape)
  /** An HTTP error with an OpenAI-style error body and optional Retry-After headers. */
  | { kind: "error"; status: number; message?: string; retry_after?: string; retry_after_ms?: string }
  /** 200 with content-type JSON and a body that is not JSON. */
  | { kind: "malformed" }
  /** 200 with a JSON body that is not a chat completion. */
  | { kind: "wrong_shape" }
  /** Accepts the request and never answers. */
  | { kind: "hang" }
  /** Sends the status line and headers, then never sends the body. */
  | { kind: "stall_body" };

/** How a reply is streamed, when the request asks for it. */
export interface StreamShape {
  /** The pieces of the content, in order (default: the content cut before each space). */
  deltas?: string[];
  /** Wait between pieces (default 0: all at once). */
  interval_ms?: number;
  /** After this many pieces the server closes the connection, without finish reason or [DONE]. */
  cut_after?: number;
  /** After this many pieces the server sends an error event and ends the reply. */
  error_after?: number;
  /** After this many pieces the server sends nothing more and keeps the connection open. */
  stall_after?: number;
  /** Answer in one piece, as a server that does not stream would. */
  ignore_stream?: boolean;
}

/** One request as the server saw it. */
export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body, or the raw text when it was not JSON. */
  body: any;
  /** Date.now() when the request arrived. */
  at: number;
  /** performance.now() when each piece of a streamed reply was written. */
  pieces_at: number[];
}

/** Handle on a running fake server. */
export interface FakeOpenAI {
  /** Base URL to configure a provider with (ends in /v1). */
  url: string;
  port: number;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Only the chat-completions requests. */
  chats(): RecordedRequest[];
  /** Queues behaviours for the next chat requests, in order. */
  script(...b: Behaviour[]): void;
  /** Behaviour once the script is used up. */
  setDefault(b: Behaviour): void;
  /** Models listed by /v1/models. */
  models: string[];
  /** TCP connections accepted so far (keep-alive reuse shows as fewer connections than requests). */
  connections(): number;
  /** Streamed replies the client closed before their end. */
  abandoned(): number;
  close(): Promise<void>;
}

export const DEFAULT_USAGE: Usage = { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 };

export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** The chunk objects of a streamed reply, as OpenAI sends them, the first `pieces` of them with content. */
function streamEvents(b: StreamShape, content: string, base: Record<string, unknown>, finish: string, usage: Usage | undefined) {
  const pieces = (b.deltas ?? content.split(/(?<=\S)(?=\s)/).filter(Boolean)).slice(0, b.error_after);
  const events: unknown[] = pieces.map((p, i) => ({ ...base, choices: [{ index: 0, delta: i === 0 ? { role: "assistant", content: p } : { content: p }, finish_reason: null }] }));
  if (b.error_after !== undefined) events.push({ error: { message: "scripted stream error", type: "server_error" } });
  else {
    events.push({ ...base, choices: [{ index: 0, delta: {}, finish_reason: finish }] });
    if (usage) events.push({ ...base, choices: [], usage });
  }
  return { events, pieces: pieces.length };
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Starts the server on 127.0.0.1 with a free port. */
export async function startOpenAIServer(opts: { default?: Behaviour; models?: string[] } = {}): Promise<FakeOpenAI> {
  const queue: Behaviour[] = [];
  let fallback: Behaviour = opts.default ?? { kind: "reply" };
  const requests: RecordedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const models = opts.models ?? ["test-model"];
  let n = 0;

  const server = createServer(async (req, res) => {
    const text = await readBody(req);
    let body: any = text;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      /* keep the raw text */
    }
    const path = (req.url ?? "/").split("?")[0];
    const record: RecordedRequest = { method: req.method ?? "", path, headers: { ...req.headers }, body, at: Date.now(), pieces_at: [] };
    requests.push(record);

    if (req.method === "GET" && path === "/v1/models") {
      return json(res, 200, { object: "list", data: models.map((id) => ({ id, object: "model", created: 0, owned_by: "test" })) });
    }
    if (req.method !== "POST" || path !== "/v1/chat/completions") {
      return json(res, 404, { error: { message: `no route ${req.method} ${path}`, type: "invalid_request_error" } });
    }
    const b = queue.shift() ?? fallback;
    switch (b.kind) {
      case "reply": {
        const send = () => {
          const messages: Array<{ role: string; content: string }> = Array.isArray(body?.messages) ? body.messages : [];
          const lastUser = [...messages].reverse().find((m) => m.role === "user")?.content ?? "";
          const content = b.content ?? `echo: ${lastUser}`;
          const usage = b.usage === false ? undefined : (b.usage ?? DEFAULT_USAGE);
          const base = { id: `chatcmpl-${++n}`, created: Math.floor(Date.now() / 1000), model: b.model ?? body?.model ?? "test-model" };
          if (body?.stream === true && !b.ignore_stream) {
            const reply = streamEvents(b, content, { ...base, object: "chat.completion.chunk" }, b.finish_reason ?? "stop", body?.stream_options?.include_usage ? usage : undefined);
            return stream(res, reply, b, record);
          }
          const reply: Record<string, unknown> = {
            ...base,
            object: "chat.completion",
            choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: b.finish_reason ?? "stop" }],
          };
          if (usage) reply.usage = usage;
          json(res, 200, reply);
        };
        if (!b.delay_ms) return send();
        const t = setTimeout(() => {
          timers.delete(t);
          if (!res.destroyed) send();
        }, b.delay_ms);
        timers.add(t);
        return;
      }
      case "error": {
        const headers: Record<string, string> = {};
        if (b.retry_after !== undefined) headers["retry-after"] = b.retry_after;
        if (b.retry_after_ms !== undefined) headers["retry-after-ms"] = b.retry_after_ms;
        return json(res, b.status, { error: { message: b.message ?? `scripted ${b.status}`, type: "test_error", code: null } }, headers);
      }
      case "malformed":
        res.writeHead(200, { "content-type": "application/json" });
        return res.end('{"id": "chatcmpl-x", "choices": [ {"message": ');
      case "wrong_shape":
        return json(res, 200, { hello: "world" });
      case "hang":
        return; // the socket stays open until the client gives up or the server closes
      case "stall_body":
        res.writeHead(200, { "content-type": "application/json" });
        res.flushHeaders();
        return;
    }
  });

  let abandoned = 0;
  /** Writes the events one by one, `interval_ms` apart, then [DONE]; `cut_after` pieces: the connection closes. */
  function stream(res: ServerResponse, { events, pieces }: { events: unknown[]; pieces: number }, b: StreamShape, record: RecordedRequest): void {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    let i = 0;
    let ended = false;
    res.on("close", () => void (ended || abandoned++));
    const step = () => {
      if (res.destroyed) return;
      if (i === b.stall_after) return;
      if (i === b.cut_after) {
        ended = true;
        res.destroy();
        return;
      }
      if (i === events.length) {
        ended = true;
        // An error event ends the reply without [DONE].
        res.end(b.error_after === undefined ? "data: [DONE]\n\n" : undefined);
        return;
      }
      if (i < pieces) record.pieces_at.push(performance.now());
      res.write(`data: ${JSON.stringify(events[i++])}\n\n`);
      const t = setTimeout(() => {
        timers.delete(t);
        step();
      }, b.interval_ms ?? 0);
      timers.add(t);
    };
    step();
  }

  let connections = 0;
  server.on("connection", () => void connections++);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    port,
    requests,
    chats: () => requests.filter((r) => r.path === "/v1/chat/completions"),
    script: (...b) => void queue.push(...b),
    setDefault: (b) => void (fallback = b),
    models,
    connections: () => connections,
    abandoned: () => abandoned,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A base URL on 127.0.0.1 where nothing listens: connections are refused. */
export async function refusedUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}/v1`;
}


/**
 * The `providers` section of a configuration whose `openai` provider (model "test-model")
 * is the fake server at `url`, falling back to offline unless `alone`; the rest (breaker
 * settings) as given.
 */
export function fakeProviders(
  url: string,
  openai: { api_key: string; timeout_ms: number; max_retries?: number },
  rest: { alone?: boolean; failure_threshold?: number; cooldown_ms?: number; deadline_ms?: number } = {},
) {
  const { alone, ...breaker } = rest;
  const defs: Record<string, { kind: "openai" | "offline"; model: string; base_url?: string; api_key?: string; timeout_ms?: number; max_retries?: number }> = {
    openai: { kind: "openai", base_url: url, model: "test-model", max_retries: 0, ...openai },
  };
  if (!alone) defs.offline = { kind: "offline", model: "offline-echo-1" };
  return { chain: Object.keys(defs), defs, ...breaker };
}
