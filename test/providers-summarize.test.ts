// The summarize prompts and the word bound on the model's output.
import { describe, expect, it } from "vitest";
import { limitWords, summarizePrompt } from "../lib/providers";

const words = (s: string) => s.split(/\s+/).filter((w) => w && !/^([-*•]|\d+[.)])$/.test(w)).length;

describe("summarizePrompt", () => {
  it("asks for a concise summary with the seed's wording at temperature 0.3", () => {
    const p = summarizePrompt("The ship sailed at dawn.", 50, "concise");
    expect(p.temperature).toBe(0.3);
    expect(p.messages.at(-1)).toEqual({ role: "user", content: "Summarize in 50 words or less:\n\nThe ship sailed at dawn." });
  });

  it("asks for a detailed summary that keeps names and numbers, within the limit", () => {
    const user = summarizePrompt("Captain Ada paid 300 gold.", 120, "detailed").messages.at(-1)!.content;
    expect(user).toMatch(/detailed summary/);
    expect(user).toMatch(/120 words or less/);
    expect(user).toMatch(/names and numbers/);
    expect(user.endsWith("Captain Ada paid 300 gold.")).toBe(true);
  });

  it("asks for bullet points with a total word limit", () => {
    const user = summarizePrompt("text", 80, "bullets").messages.at(-1)!.content;
    expect(user).toMatch(/bullet points/);
    expect(user).toMatch(/80 words or less in total/);
  });

  it("defaults to concise and leaves room for max_length words in max_tokens", () => {
    const p = summarizePrompt("text", 200);
    expect(p.messages.at(-1)!.content.startsWith("Summarize in 200 words or less:")).toBe(true);
    expect(p.max_tokens).toBeGreaterThanOrEqual(200 * 1.5);
  });
});

describe("limitWords", () => {
  it("leaves text within the limit unchanged", () => {
    expect(limitWords("The tide turns at noon.", 10)).toBe("The tide turns at noon.");
  });

  it("cuts prose at the word limit", () => {
    const out = limitWords("one two three four five six seven", 4);
    expect(out).toBe("one two three four");
  });

  it("keeps bullet lines and does not count the markers as words", () => {
    const out = limitWords("- alpha beta gamma\n- delta epsilon\n- zeta eta theta", 5);
    expect(out).toBe("- alpha beta gamma\n- delta epsilon");
    expect(words(out)).toBe(5);
  });

  it("cuts inside a bullet when the limit falls there", () => {
    expect(limitWords("* one two\n* three four five", 3)).toBe("* one two\n* three");
    expect(limitWords("1. first point here\n2. second", 4)).toBe("1. first point here\n2. second");
  });

  it("never returns more than max words for long model output", () => {
    const long = Array.from({ length: 500 }, (_, i) => `w${i}`).join(" ");
    expect(words(limitWords(long, 200))).toBe(200);
  });

  it("trims surrounding blank lines and collapses long gaps", () => {
    expect(limitWords("\n\nfirst para\n\n\n\nsecond para\n\n", 10)).toBe("first para\n\nsecond para");
  });
});
