// The token estimate: the ASCII fast path must count exactly as the Unicode path does.
import { describe, expect, it } from "vitest";
import { estimateMessagesTokens, estimateTokens, estimateTokensAscii, estimateTokensUnicode } from "../lib/providers/tokens";

/** A small deterministic generator, so a failing string can be reproduced. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS = "0123456789";
const PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
const SPACE = " \t\n\r\v\f";
const CONTROL = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join("") + "\x7f";

/** ASCII text built from runs of one class, so runs of letters, digits and marks meet in every order. */
function asciiText(next: () => number): string {
  const classes = [LETTERS, DIGITS, PUNCT, SPACE, CONTROL];
  const weights = [0.45, 0.15, 0.15, 0.2, 0.05];
  let out = "";
  const pieces = Math.floor(next() * 40);
  for (let p = 0; p < pieces; p++) {
    let r = next();
    let k = 0;
    while (k < weights.length - 1 && r >= weights[k]) r -= weights[k++];
    const set = classes[k];
    const len = 1 + Math.floor(next() * 12);
    for (let i = 0; i < len; i++) out += set[Math.floor(next() * set.length)];
  }
  return out;
}

describe("estimateTokens", () => {
  it("counts words per 4 letters, numbers per 3 digits and each mark as one", () => {
    expect(estimateTokens("")).toBe(0);
    expect(estimateTokens("hello world")).toBe(4);
    expect(estimateTokens("a")).toBe(1);
    expect(estimateTokens("12345")).toBe(2);
    expect(estimateTokens("abc123")).toBe(2);
    expect(estimateTokens("Hi, you!")).toBe(4);
    expect(estimateTokens("   \t\n")).toBe(0);
    expect(estimateTokens("x\x00y")).toBe(3);
    expect(estimateMessagesTokens([{ content: "hello world" }, { content: "" }])).toBe(3 + 4 + 4 + 4);
  });

  it("gives the same count on the ASCII fast path as the Unicode path, on varied ASCII text", () => {
    const next = rng(20261126);
    for (let i = 0; i < 5_000; i++) {
      const s = asciiText(next);
      const fast = estimateTokensAscii(s);
      if (fast !== estimateTokensUnicode(s)) {
        // Name the string in the failure, escaped so control characters are visible.
        expect({ text: JSON.stringify(s), fast }).toEqual({ text: JSON.stringify(s), fast: estimateTokensUnicode(s) });
      }
      expect(estimateTokens(s)).toBe(fast);
    }
  });

  it("agrees on every single ASCII character and every pair", () => {
    for (let a = 0; a < 128; a++) {
      const one = String.fromCharCode(a);
      expect(estimateTokensAscii(one)).toBe(estimateTokensUnicode(one));
      for (let b = 0; b < 128; b++) {
        const two = one + String.fromCharCode(b);
        expect(estimateTokensAscii(two)).toBe(estimateTokensUnicode(two));
      }
    }
  });

  it("leaves text with any non-ASCII character to the Unicode path", () => {
    for (const s of ["café au lait", "naïve 123", "日本語のテキスト", "emoji 🎉 party", "x\u00a0y", "a\u2028b", "Ünïcödé"]) {
      expect(estimateTokensAscii(s)).toBe(-1);
      expect(estimateTokens(s)).toBe(estimateTokensUnicode(s));
    }
    // Latin letters beyond ASCII stay in one word with their ASCII neighbours.
    expect(estimateTokens("café")).toBe(1);
    // Non-Latin letters cost one each.
    expect(estimateTokens("日本語")).toBe(3);
  });
});
