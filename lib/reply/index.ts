// Reply size bounds. A NATS message cannot exceed the server's max_payload (1 MB by default);
// a reply over it is never sent and the caller only sees a timeout. List replies therefore
// take as many entries as fit and say that more exist (a cursor, or `truncated`).

/** The server's default max_payload, used when the connection's is not known. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
/** Room kept for the reply's other fields, headers and protocol framing. */
const RESERVE = 4 * 1024;

const enc = new TextEncoder();

/** Bytes a value takes in a JSON reply. */
export const jsonBytes = (v: unknown) => enc.encode(JSON.stringify(v)).length;

/** The bytes a list in a reply may take on a connection whose largest message is `maxPayload`. */
export const listBudget = (maxPayload: number | undefined) => Math.max(0, (maxPayload ?? DEFAULT_MAX_PAYLOAD) - RESERVE);

/**
 * How many of `items`, from the first, fit in `budget` bytes of JSON; `size` gives an item's
 * bytes (default: its JSON). At least one is taken when `atLeastOne`, so a listing always moves on.
 */
export function fitting<T>(items: readonly T[], budget: number, size: (item: T) => number = jsonBytes, atLeastOne = false): number {
  let used = 2; // the brackets
  let n = 0;
  for (const item of items) {
    used += size(item) + (n > 0 ? 1 : 0);
    if (used > budget && !(atLeastOne && n === 0)) break;
    n++;
  }
  return n;
}
