// The HTTP transport of OpenAI-compatible providers: one POST with a JSON body, the reply
// read whole (text) or as it arrives (body, for streamed replies), over node:http(s) with a
// pool of keep-alive connections per provider. It has the shape of the part of fetch the provider uses, so a fetch (a proxy, a
// test's spy) can stand in for it. On Node 20 a request through node:http costs a fraction
// of the CPU of one through global fetch (bench/providers.bench.ts, BENCHMARKS.md).
import http from "node:http";
import https from "node:https";

/** What the provider reads of an answer: a Response satisfies it. */
export interface HttpReply {
  status: number;
  headers: { get(name: string): string | null };
  /** The whole body. Read either this or `body`, once. */
  text(): Promise<string>;
  /** The body as it arrives. */
  body?: AsyncIterable<Uint8Array> | null;
}

/** What the provider sends: fetch accepts it. */
export interface HttpPost {
  method: "POST";
  headers: Record<string, string>;
  body: string;
  signal: AbortSignal;
}

/** Sends one request and resolves with the answer; `typeof fetch` is one. */
export type Transport = (url: string, init: HttpPost) => Promise<HttpReply>;

/** Most connections one provider keeps open to its server; more requests wait for one. */
const MAX_SOCKETS = 256;
/**
 * An idle connection is closed after this long (earlier when the server announces a shorter
 * keep-alive), before a server would close it under a request being sent on it.
 */
const IDLE_MS = 4_000;

/** Response headers by lower-case name, the way fetch's Headers.get answers. */
function headerReader(headers: http.IncomingHttpHeaders): HttpReply["headers"] {
  return {
    get(name) {
      const v = headers[name.toLowerCase()];
      return v === undefined ? null : Array.isArray(v) ? v.join(", ") : v;
    },
  };
}

/** The whole body of a response as text; rejects when the connection breaks before its end. */
function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.once("error", reject);
    res.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

/**
 * A transport with its own keep-alive pool. Errors are node's: a refused or reset connection
 * rejects with its `code` (ECONNREFUSED, ECONNRESET…), an aborted signal with an AbortError,
 * an invalid header value with a TypeError before anything is sent.
 */
export function createTransport(): Transport {
  const agents = {
    http: new http.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS, timeout: IDLE_MS }),
    https: new https.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS, timeout: IDLE_MS }),
  };
  // A provider posts to one URL: parse it once, not per request.
  let last: { url: string; target: URL; secure: boolean } | undefined;
  return (url, init) => {
    if (last?.url !== url) last = { url, target: new URL(url), secure: url.startsWith("https:") };
    const { target, secure } = last;
    return new Promise<HttpReply>((resolve, reject) => {
      const req = (secure ? https : http).request(
        {
          protocol: target.protocol,
          hostname: target.hostname.replace(/^\[|\]$/g, ""),
          port: target.port,
          path: target.pathname + target.search,
          method: init.method,
          agent: secure ? agents.https : agents.http,
          headers: { ...init.headers, "content-length": String(Buffer.byteLength(init.body)) },
        },
        (res) => {
          // The signal aborts the body too, until it is read or cut.
          res.once("close", done);
          resolve({ status: res.statusCode ?? 0, headers: headerReader(res.headers), text: () => readAll(res), body: res });
        },
      );
      // One listener on the signal, let go when the response ends (node's own `signal` option
      // costs more per request: it tracks the stream's end).
      const onAbort = () => req.destroy(new DOMException("The operation was aborted", "AbortError"));
      const done = () => init.signal.removeEventListener("abort", onAbort);
      const fail = (err: Error) => {
        done();
        reject(err);
      };
      if (init.signal.aborted) onAbort();
      else init.signal.addEventListener("abort", onAbort, { once: true });
      req.on("error", fail);
      req.end(init.body);
    });
  };
}
