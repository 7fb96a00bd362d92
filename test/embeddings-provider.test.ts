// The embeddings provider against a real local HTTP server speaking /v1/embeddings: what it
// sends, the unit vectors it returns, its configuration, and its failures — classified,
// scrubbed of secrets, logged once per burst, and skipped for the cooldown after one.
import { describe, expect, it } from "vitest";
import { defaultConfig, loadConfig, type ConfigInput } from "../lib/config";
import { createLogger } from "../lib/log";
import { createEmbedder, isProviderFailure, mapEmbeddings, refusedText, unitVector, type ProviderFailure } from "../lib/providers";
import { rejectionOf } from "./helpers/assert";
import { DIMENSIONS, useEmbeddingsServer } from "./helpers/embeddings-server";
import { refusedUrl } from "./helpers/openai-server";

const KEY = "sk-embed-secret-0123456789";
const server = useEmbeddingsServer();

/** An embedder of `embeddings` settings, its log lines, and a clock the test moves. */
function embedder(embeddings: Partial<ConfigInput["embeddings"] & object> = {}) {
  const lines: Array<Record<string, unknown>> = [];
  const clock = { t: 1_000_000, now: () => clock.t };
  const config = defaultConfig({ embeddings: { model: "concepts-1", base_url: server.url, api_key: KEY, ...embeddings }, providers: { cooldown_ms: 30_000 } as never });
  const log = createLogger("debug", {}, (l) => lines.push(JSON.parse(l)));
  return { e: createEmbedder(config, { log, clock })!, lines, clock };
}

const failure = (p: Promise<unknown>): Promise<ProviderFailure> => rejectionOf(p, isProviderFailure);
const norm = (v: Float32Array) => Math.sqrt(v.reduce((n, x) => n + x * x, 0));

describe("embeddings provider", () => {
  it("is off unless a model is configured", () => {
    expect(createEmbedder(defaultConfig(), { log: createLogger("silent"), clock: { now: () => 0 } })).toBeUndefined();
  });

  it("posts {model, input} with the key and the purpose's prefix, and returns unit vectors in input order", async () => {
    const { e } = embedder({ query_prefix: "search_query: ", document_prefix: "search_document: ", dimensions: 256 });
    // Fewer dimensions make other vectors than the model's own: they are named apart.
    expect(e.model).toBe("concepts-1@256");
    const [a, b] = await e.embed(["Bob loves old horror movies", "Carol hates coffee"], "document");
    expect(a.length).toBe(DIMENSIONS);
    expect(norm(a)).toBeCloseTo(1, 5);
    expect(norm(b)).toBeCloseTo(1, 5);
    await e.embed(["what films does bob like"], "query");
    const [doc, query] = server.requests;
    expect(doc.body).toEqual({ model: "concepts-1", input: ["search_document: Bob loves old horror movies", "search_document: Carol hates coffee"], dimensions: 256 });
    expect(query.body.input).toEqual(["search_query: what films does bob like"]);
    expect(doc.headers.authorization).toBe(`Bearer ${KEY}`);
  });

  it("classifies failures, and keeps the key and the server's text out of what it throws", async () => {
    server.script({ kind: "error", status: 401, message: `Incorrect API key provided: ${KEY}` });
    const f = await failure(embedder().e.embed(["x"], "query"));
    expect(f.info).toMatchObject({ reason: "auth", status: 401 });
    expect(f.message).not.toContain(KEY);
    server.script({ kind: "wrong_shape" });
    expect((await failure(embedder().e.embed(["x"], "query"))).info.reason).toBe("malformed");
    const down = embedder({ base_url: await refusedUrl() });
    expect((await failure(down.e.embed(["x"], "query"))).info.reason).toBe("connection");
  });

  it("gives up on a query after query_timeout_ms and on a memory after timeout_ms", async () => {
    server.setDefault({ kind: "hang" });
    const { e } = embedder({ query_timeout_ms: 100, timeout_ms: 150 });
    expect((await failure(e.embed(["x"], "query"))).info.reason).toBe("timeout");
    const slow = embedder({ query_timeout_ms: 100, timeout_ms: 150 }).e;
    expect((await failure(slow.embed(["x"], "document"))).info.reason).toBe("timeout");
  });

  it("skips the server for the cooldown after it failed, logging the burst once, and says when it answers again", async () => {
    const { e, lines, clock } = embedder();
    server.setDefault({ kind: "error", status: 503 });
    await failure(e.embed(["apple"], "query"));
    expect(e.available()).toBe(false);
    await failure(e.embed(["banana"], "query")); // skipped: no request
    expect(server.requests).toHaveLength(1);
    clock.t += 30_000;
    await failure(e.embed(["cherry"], "query")); // the probe fails: still the same burst
    expect(server.requests).toHaveLength(2);
    const warned = lines.filter((l) => l.level === "warn");
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ msg: expect.stringContaining("failing"), reason: "server_error", status: 503 });
    clock.t += 30_000;
    server.setDefault({ kind: "ok" });
    await e.embed(["damson"], "query");
    expect(e.available()).toBe(true);
    expect(lines.some((l) => l.msg === "embeddings answering again")).toBe(true);
  });

  it("takes a refused text (400) for that text's problem, not the server's: it stays available", async () => {
    const { e, lines } = embedder();
    server.script({ kind: "error", status: 400, message: `input too long; key=${KEY}` });
    const f = await failure(e.embed(["x".repeat(50)], "document"));
    expect(refusedText(f)).toBe(true);
    expect(e.available()).toBe(true);
    expect(JSON.stringify(lines)).not.toContain(KEY);
    expect(lines.find((l) => l.level === "warn")?.error).toContain("[redacted]");
  });
});

describe("embeddings bodies", () => {
  it("orders vectors by their index and refuses bodies that do not give one per input", () => {
    const [a, b] = mapEmbeddings({ data: [{ index: 1, embedding: [0, 2] }, { index: 0, embedding: [3, 4] }] }, 2)!;
    expect([...a]).toEqual([0.6, 0.800000011920929].map(Math.fround));
    expect([...b]).toEqual([0, 1]);
    expect(mapEmbeddings({ data: [{ embedding: [1, 0] }] }, 2)).toBeNull();
    expect(mapEmbeddings({ data: [{ index: 0, embedding: [1] }, { index: 0, embedding: [1] }] }, 2)).toBeNull();
    expect(mapEmbeddings({ data: [{ embedding: [1, 0] }, { embedding: [1, 0, 0] }] }, 2)).toBeNull();
    expect(mapEmbeddings({ error: "x" }, 1)).toBeNull();
    expect(mapEmbeddings(null, 1)).toBeNull();
  });

  it("refuses vectors that cannot be scaled to length 1", () => {
    expect(unitVector([0, 0])).toBeNull();
    expect(unitVector([1, Number.NaN])).toBeNull();
    expect(unitVector(["1"])).toBeNull();
    expect(unitVector([])).toBeNull();
  });
});

describe("embeddings configuration", () => {
  it("is off by default and reads its environment variables", () => {
    expect(loadConfig({}).embeddings.model).toBeUndefined();
    const c = loadConfig({
      ROSEY_EMBEDDINGS_MODEL: "nomic-embed-text",
      ROSEY_EMBEDDINGS_BASE_URL: "http://127.0.0.1:11434/v1",
      ROSEY_EMBEDDINGS_DIMENSIONS: "512",
      ROSEY_EMBEDDINGS_TIMEOUT_MS: "4000",
      ROSEY_EMBEDDINGS_QUERY_TIMEOUT_MS: "900",
      ROSEY_EMBEDDINGS_QUERY_PREFIX: "search_query: ",
      ROSEY_EMBEDDINGS_DOCUMENT_PREFIX: "search_document: ",
    });
    expect(c.embeddings).toMatchObject({
      model: "nomic-embed-text",
      base_url: "http://127.0.0.1:11434/v1",
      dimensions: 512,
      timeout_ms: 4000,
      query_timeout_ms: 900,
      query_prefix: "search_query: ",
      document_prefix: "search_document: ",
    });
    expect(c.embeddings.api_key).toBeUndefined();
  });

  it("reads the file's embeddings section, the environment winning", () => {
    const file = JSON.stringify({ embeddings: { model: "bge-m3", base_url: "http://127.0.0.1:8000/v1", headers: { "x-team": "a" } } });
    const c = loadConfig({ ROSEY_CONFIG: "/x.json", ROSEY_EMBEDDINGS_MODEL: "e5" }, () => file);
    expect(c.embeddings).toMatchObject({ model: "e5", base_url: "http://127.0.0.1:8000/v1", headers: { "x-team": "a" } });
  });

  it("uses the OpenAI key for OpenAI's server only", () => {
    const openai = loadConfig({ ROSEY_EMBEDDINGS_MODEL: "text-embedding-3-small", OPENAI_API_KEY: "sk-chat" });
    expect(openai.embeddings).toMatchObject({ base_url: "https://api.openai.com/v1", api_key: "sk-chat" });
    const own = loadConfig({ ROSEY_EMBEDDINGS_MODEL: "text-embedding-3-small", OPENAI_API_KEY: "sk-chat", ROSEY_EMBEDDINGS_API_KEY: "sk-emb" });
    expect(own.embeddings.api_key).toBe("sk-emb");
    const local = loadConfig({ ROSEY_EMBEDDINGS_MODEL: "nomic-embed-text", ROSEY_EMBEDDINGS_BASE_URL: "http://127.0.0.1:11434/v1", OPENAI_API_KEY: "sk-chat" });
    expect(local.embeddings.api_key).toBeUndefined();
  });

  it.each([
    [{ ROSEY_EMBEDDINGS_BASE_URL: "http://127.0.0.1:11434/v1" }, /invalid setting ROSEY_EMBEDDINGS_MODEL \(embeddings.model\): an embedding model is needed/],
    [{ ROSEY_EMBEDDINGS_MODEL: "text-embedding-3-small" }, /invalid setting ROSEY_EMBEDDINGS_API_KEY \(embeddings.api_key\): https:\/\/api.openai.com\/v1 needs a key/],
    [{ ROSEY_EMBEDDINGS_MODEL: "m", ROSEY_EMBEDDINGS_BASE_URL: "not a url" }, /invalid setting ROSEY_EMBEDDINGS_BASE_URL/],
    [{ ROSEY_EMBEDDINGS_MODEL: "m", ROSEY_EMBEDDINGS_BASE_URL: "http://h/v1", ROSEY_EMBEDDINGS_QUERY_TIMEOUT_MS: "0" }, /invalid setting ROSEY_EMBEDDINGS_QUERY_TIMEOUT_MS/],
  ])("refuses %o", (env, re) => {
    expect(() => loadConfig(env)).toThrow(re);
  });
});
