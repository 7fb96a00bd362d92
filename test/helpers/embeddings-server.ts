// A real local HTTP server speaking the OpenAI embeddings API (POST /v1/embeddings), with
// deterministic vectors: a bag of concepts. Words of one concept below (films, movies,
// cinema…) add to the same dimension (a word's own form first, else its stem's), any other
// word to a dimension of its own (hashed by stem),
// so a paraphrase lands close to what it paraphrases and names still tell people apart.
// The concepts were written for the paraphrase fixture's vocabulary: what recall scores with
// this server is what fusion makes of an embedding that links those words, not what any
// real model would score. Requests can be scripted to fail, hang or answer nonsense.
import { createServer } from "node:http";
import { afterAll, beforeAll, beforeEach } from "vitest";
import type { AddressInfo } from "node:net";
import { STOP_WORDS, stem, words } from "../../lib/memory";
import { json, readBody } from "./openai-server";

const CONCEPTS = [
  "film movie cinema horror thriller",
  "love like enjoy adore fan favourite favorite top prefer into",
  "hate dislike detest",
  "job work occupation profession living career employed nurse engineer pilot chef cook teacher teaches",
  "pet animal cat dog puppy beagle greyhound parrot bird goldfish fish aquarium capybara",
  "dog puppy beagle greyhound hound breed",
  "bird parrot",
  "fish goldfish aquarium",
  "food eat eats meal dish dinner lunch steak meat ramen bread loaf loaves sourdough bake vegetarian gluten wheat flour peanut nut",
  "meat steak beef vegetarian",
  "gluten wheat flour bread loaf loaves sourdough",
  "nut nuts peanut peanuts allergy allergic",
  "drink drinks drinking beverage tea coffee espresso beer alcohol wine",
  "alcohol beer wine drinking",
  "coffee espresso",
  "music song band punk jazz guitar bass cello orchestra instrument record vinyl album albums",
  "instrument guitar bass cello piano violin perform",
  "record records vinyl album albums",
  "sport exercise football soccer tennis racket doubles swim swims laps marathon race bouldering climbing gym practise",
  "football soccer club team",
  "tennis racket doubles",
  "swim swims laps pool",
  "marathon race",
  "bouldering climbing climb gym",
  "live lives home house houseboat city town",
  "city town lisbon berlin dublin",
  "move moved relocate",
  "raised grew childhood upbringing",
  "travel vacation holiday visit visited trip",
  "camping tent camp",
  "child children kid kids daughter daughters son sons",
  "baby pregnant expecting",
  "language tongue japanese spanish speak speaks fluent talk",
  "study studying learn learning university college school major law subject",
  "tv series season show trek sci fi bingeing watching",
  "book books novel novels fiction detective read reads genre",
  "medical condition diabetic diabetes injured injury broke ankle",
  "vehicle car automobile volvo motorbike bike drive drives ride rides commute",
  "fly planes plane pilot airline cargo",
  "bed bedtime sleep asleep midnight",
  "morning day",
  "weekend weekends saturday saturdays sunday sundays",
  "born birth birthday",
  "wedding married marry",
  "art artwork paint paints painting watercolour landscape",
  "game board chess",
  "quiz trivia host hosts",
  "computer computers laptop laptops software coding programming code",
  "phone iphone mobile smartphone",
  "repair repairs fix fixes broken",
  "scared afraid fear",
  "spider spiders insect insects",
  "garden grow grows cultivate tomato tomatoes vegetable vegetables balcony",
  "spoiler spoilers reveal plot twist",
  "mascot represent represents symbol",
  "moderator order rules admin",
  "chat channel server group general",
];

/** Dimensions a word outside every concept may land on. */
const HASHED = 512;

/** The concepts of each listed word, and of each stem of one (for the forms not listed: "loved"). */
const conceptOf = new Map<string, number[]>();
const conceptOfStem = new Map<string, number[]>();
const add = (map: Map<string, number[]>, k: string, i: number) => map.set(k, [...new Set([...(map.get(k) ?? []), i])]);
CONCEPTS.forEach((line, i) => {
  for (const w of line.split(" ")) {
    add(conceptOf, w, i);
    add(conceptOfStem, stem(w), i);
  }
});

/** FNV-1a of a word, onto a dimension past the concepts. */
function hashed(word: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 0x01000193);
  return CONCEPTS.length + ((h >>> 0) % HASHED);
}

/** Length of every vector the server returns. */
export const DIMENSIONS = CONCEPTS.length + HASHED;

/** The bag-of-concepts vector of a text (not normalized: the service normalizes what it gets). */
export function conceptVector(text: string): number[] {
  const v = new Array<number>(DIMENSIONS).fill(0);
  for (const w of words(text)) {
    if (STOP_WORDS.has(w)) continue;
    const s = stem(w);
    for (const d of conceptOf.get(w) ?? conceptOfStem.get(s) ?? [hashed(s)]) v[d] += 1;
  }
  return v;
}

/** What the server does with one embeddings request. */
export type EmbeddingsBehaviour =
  | { kind: "ok" }
  | { kind: "error"; status: number; message?: string }
  /** 200 with a body that has no embeddings. */
  | { kind: "wrong_shape" }
  /** Accepts the request and never answers. */
  | { kind: "hang" };

export interface EmbeddingsRequest {
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

export interface FakeEmbeddings {
  /** Base URL to configure embeddings with (ends in /v1). */
  url: string;
  /** Every embeddings request received, in order. */
  requests: EmbeddingsRequest[];
  /** Every text embedded, in order. */
  inputs(): string[];
  /** Queues behaviours for the next requests, in order. */
  script(...b: EmbeddingsBehaviour[]): void;
  /** Behaviour once the script is used up. */
  setDefault(b: EmbeddingsBehaviour): void;
  close(): Promise<void>;
}

/** Starts the server on 127.0.0.1 with a free port. */
export async function startEmbeddingsServer(): Promise<FakeEmbeddings> {
  const queue: EmbeddingsBehaviour[] = [];
  let fallback: EmbeddingsBehaviour = { kind: "ok" };
  const requests: EmbeddingsRequest[] = [];

  const server = createServer(async (req, res) => {
    const text = await readBody(req);
    if (req.method !== "POST" || req.url !== "/v1/embeddings") return json(res, 404, { error: { message: "no such route" } });
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      return json(res, 400, { error: { message: "body is not JSON" } });
    }
    requests.push({ headers: { ...req.headers }, body });
    const b = queue.shift() ?? fallback;
    if (b.kind === "hang") return;
    if (b.kind === "error") return json(res, b.status, { error: { message: b.message ?? `scripted ${b.status}` } });
    if (b.kind === "wrong_shape") return json(res, 200, { object: "list", data: [{ index: 0 }] });
    const input: string[] = typeof body.input === "string" ? [body.input] : body.input;
    json(res, 200, {
      object: "list",
      model: body.model,
      data: input.map((t, index) => ({ object: "embedding", index, embedding: conceptVector(t) })),
      usage: { prompt_tokens: input.length, total_tokens: input.length },
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    inputs: () => requests.flatMap((r) => (typeof r.body.input === "string" ? [r.body.input] : r.body.input)),
    script: (...b) => void queue.push(...b),
    setDefault: (b) => void (fallback = b),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A server for the tests of the enclosing file (or describe block): started before them and
 * closed after, its record cleared and its default behaviour reset before each test.
 */
export function useEmbeddingsServer(): FakeEmbeddings {
  let s!: FakeEmbeddings;
  beforeAll(async () => {
    s = await startEmbeddingsServer();
  });
  afterAll(() => s?.close());
  beforeEach(() => {
    s.requests.length = 0;
    s.setDefault({ kind: "ok" });
  });
  return {
    get url() {
      return s.url;
    },
    get requests() {
      return s.requests;
    },
    inputs: () => s.inputs(),
    script: (...b) => s.script(...b),
    setDefault: (b) => s.setDefault(b),
    close: () => s.close(),
  };
}
