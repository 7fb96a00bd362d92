// Encoding of user and channel names into KV keys and subject tokens.
//
// Names come from chat networks and may contain anything a key or subject treats as
// syntax ('.', '*', '>', spaces, '/'). base64url (RFC 4648 §5, no padding) maps every
// UTF-8 string to [A-Za-z0-9_-]+, which is valid in both a KV key and a subject token,
// and is injective: two different names never share an encoding, so no name can reach
// another name's key. A 200-character name of 4-byte emoji encodes to ~1,070 characters,
// well under the key length NATS accepts.

/** Encodes a name into one KV key / subject token. */
export function encodeName(name: string): string {
  if (name.length === 0) throw new Error("cannot encode an empty name");
  return Buffer.from(name, "utf8").toString("base64url");
}

/** Inverse of encodeName. */
export function decodeName(token: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw new Error(`not an encoded name: ${token}`);
  return Buffer.from(token, "base64url").toString("utf8");
}

/** Joins already-safe parts into a key. Parts must be tokens (no dots) from encodeName or fixed words. */
export function key(...parts: Array<string | number>): string {
  for (const p of parts) {
    const s = String(p);
    if (!/^[A-Za-z0-9_=-]+$/.test(s)) throw new Error(`unsafe key part: ${JSON.stringify(s)}`);
  }
  return parts.join(".");
}
