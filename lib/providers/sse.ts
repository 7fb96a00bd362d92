// Server-sent events, as OpenAI-compatible servers stream a chat completion: the body is
// lines of text; an event is the `data:` lines before a blank line (joined with line
// breaks); lines starting with `:` are comments, other fields (`event:`, `id:`) are not
// used here. Bytes are decoded as UTF-8 across chunk boundaries, and a line may not grow
// past a bound, so a server that never sends a line break cannot fill the memory.

/** Longest line accepted (a whole chat completion chunk fits many times over). */
export const MAX_LINE_CHARS = 1 << 20;

/** Thrown for a line longer than MAX_LINE_CHARS. */
export class SseLineTooLong extends Error {
  constructor() {
    super(`server-sent event line longer than ${MAX_LINE_CHARS} characters`);
    this.name = "SseLineTooLong";
  }
}

/** The data of each event in `body`, in order; an event without data lines is skipped. */
export async function* sseData(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = "";
  let data: string[] = [];
  const line = (text: string): string | undefined => {
    if (text === "") {
      const event = data.length ? data.join("\n") : undefined;
      data = [];
      return event;
    }
    if (text.startsWith("data:")) data.push(text.slice(text[5] === " " ? 6 : 5));
    return undefined;
  };
  for await (const bytes of body) {
    pending += decoder.decode(bytes, { stream: true });
    let start = 0;
    for (let nl = pending.indexOf("\n"); nl !== -1; nl = pending.indexOf("\n", start)) {
      const event = line(pending.slice(start, pending[nl - 1] === "\r" ? nl - 1 : nl));
      start = nl + 1;
      if (event !== undefined) yield event;
    }
    pending = pending.slice(start);
    if (pending.length > MAX_LINE_CHARS) throw new SseLineTooLong();
  }
  // A body that ends without the blank line still ends its last event.
  const last = line(pending + decoder.decode()) ?? line("");
  if (last !== undefined) yield last;
}
