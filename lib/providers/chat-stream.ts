// Reads a streamed chat completion (`stream: true`): server-sent events of
// `chat.completion.chunk` objects, each with a piece of the reply in choices[0].delta, then
// (with `stream_options.include_usage`) one with the usage block and no choices, then
// `data: [DONE]`. Each piece goes to the caller as it arrives; the whole is returned in the
// shape of a non-streamed chat completion, so one mapping (openai.ts) reads both.
import type { FailureInput } from "./errors";
import { sseData } from "./sse";

/** A stream that is not a well-formed chat completion stream, as facts for classifyFailure. */
export class StreamFailure extends Error {
  constructor(readonly input: FailureInput) {
    super(input.message);
    this.name = "StreamFailure";
  }
}

/** The parts of a chunk this reader uses; everything else is ignored. */
interface Chunk {
  model?: unknown;
  choices?: Array<{ delta?: { content?: unknown; refusal?: unknown } | null; finish_reason?: unknown }>;
  usage?: unknown;
  error?: { message?: unknown } | null;
}

/** A streamed reply gathered into the body a non-streamed request gets. */
export interface GatheredCompletion {
  model?: string;
  choices: Array<{ message: { content: string }; finish_reason?: string }>;
  usage?: unknown;
}

/**
 * Reads the stream to its end, calling `onDelta` with every non-empty piece of content (a
 * refusal's text counts as content, as in a non-streamed reply). Throws StreamFailure for
 * an unreadable chunk, an error event or a stream that ends before `[DONE]` without a
 * finish reason; errors of the connection itself pass through as they are.
 */
export async function readChatStream(body: AsyncIterable<Uint8Array>, onDelta: (delta: string) => void): Promise<GatheredCompletion> {
  let content = "";
  let model: string | undefined;
  let finish: string | undefined;
  let usage: unknown;
  let done = false;
  for await (const data of sseData(body)) {
    // Whatever follows [DONE] is ignored, but read: a body read to its end keeps its connection alive.
    if (done || data === "[DONE]") {
      done = true;
      continue;
    }
    let chunk: Chunk;
    try {
      chunk = JSON.parse(data) as Chunk;
    } catch {
      throw new StreamFailure({ malformed: true, message: "a stream chunk is not valid JSON" });
    }
    if (typeof chunk !== "object" || chunk === null) throw new StreamFailure({ malformed: true, message: "a stream chunk is not an object" });
    if (chunk.error) {
      const detail = typeof chunk.error.message === "string" ? chunk.error.message : "no message";
      throw new StreamFailure({ streamError: true, message: detail });
    }
    if (typeof chunk.model === "string" && chunk.model) model = chunk.model;
    if (chunk.usage) usage = chunk.usage;
    const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined;
    if (!choice) continue;
    const piece = choice.delta?.content ?? choice.delta?.refusal;
    if (typeof piece === "string" && piece) {
      content += piece;
      onDelta(piece);
    }
    if (typeof choice.finish_reason === "string") finish = choice.finish_reason;
  }
  // A server may close without [DONE]; a reply it said was finished is still whole.
  if (!done && finish === undefined) throw new StreamFailure({ connection: true, message: "the stream ended before the reply was complete" });
  return { model, choices: [{ message: { content }, finish_reason: finish }], usage };
}
