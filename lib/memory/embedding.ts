// How a memory's embedding is stored inside its value in the bucket (`embedding`): the model
// and the unit vector as base64 of float32 little-endian values. Read when a channel loads
// (channel.ts), written when a memory is embedded (vectors.ts).
import type { StoredEmbedding } from "./types";

/** A vector and the model it comes from. */
export interface MemoryVector {
  model: string;
  vector: Float32Array;
}

/** The stored form of a unit vector. */
export function encodeEmbedding(model: string, vector: Float32Array): StoredEmbedding {
  const buf = Buffer.allocUnsafe(vector.length * 4);
  for (let i = 0; i < vector.length; i++) buf.writeFloatLE(vector[i], i * 4);
  return { model, vector: buf.toString("base64") };
}

/** The vector of a stored embedding; null when absent or not one. */
export function decodeEmbedding(e: unknown): MemoryVector | null {
  const s = e as StoredEmbedding | null | undefined;
  if (typeof s !== "object" || s === null || typeof s.model !== "string" || typeof s.vector !== "string") return null;
  const buf = Buffer.from(s.vector, "base64");
  if (buf.length === 0 || buf.length % 4 !== 0) return null;
  const vector = new Float32Array(buf.length / 4);
  for (let i = 0; i < vector.length; i++) {
    vector[i] = buf.readFloatLE(i * 4);
    if (!Number.isFinite(vector[i])) return null;
  }
  return { model: s.model, vector };
}
