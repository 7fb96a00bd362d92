import { describe, expect, it } from "vitest";
import { decodeName, encodeName, key } from "../lib/keys";

const NAMES = [">", "*", "a.b", "a", "a.b.c", "#chan with spaces", "🦊🎉", "x".repeat(200), "é", "e\u0301", "a/b", "a=b", "A", "a_b", "a-b"];

describe("keys", () => {
  it("encodes every name into one safe token", () => {
    for (const n of NAMES) expect(encodeName(n)).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it("never lets two names share an encoding", () => {
    const seen = new Map<string, string>();
    for (const n of NAMES) {
      const e = encodeName(n);
      expect(seen.get(e) ?? n).toBe(n);
      seen.set(e, n);
    }
    expect(seen.size).toBe(NAMES.length);
  });

  it("round-trips names, including a 200-character emoji name within key limits", () => {
    const long = "🦊".repeat(200);
    for (const n of [...NAMES, long]) expect(decodeName(encodeName(n))).toBe(n);
    expect(encodeName(long).length).toBeLessThan(1100);
  });

  it("refuses empty names and unsafe key parts", () => {
    expect(() => encodeName("")).toThrow();
    expect(() => key("u", "a.b")).toThrow(/unsafe/);
    expect(() => key("u", ">")).toThrow(/unsafe/);
    expect(() => decodeName("a.b")).toThrow();
    expect(key("u", encodeName("a.b"), 7)).toBe(`u.${encodeName("a.b")}.7`);
  });
});
