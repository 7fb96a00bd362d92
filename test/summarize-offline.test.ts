// Offline summaries are extractive: the text's most central sentences, in order, in the
// requested style and length. Pure tests of the summarizer and of the prompt the offline
// provider recognizes, then `summarize` against a running service with no API key.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOfflineProvider, extractiveSummary, readSummarizePrompt, summarizePrompt } from "../lib/providers";
import { sentences } from "../lib/providers/extractive";
import { endpointSubject } from "../lib/subjects";
import { request, useService } from "./helpers/service";

const BRIDGE = [
  "The council met on Tuesday evening in the old town hall.",
  "Several residents arrived late because of the rain.",
  "Engineers said the bridge over the river would cost forty million euros.",
  "Coffee and biscuits were served in the hall.",
  "The council will vote in March on the bridge and its cost, as the engineers advised.",
  "Residents asked whether the vote could wait until after March.",
].join(" ");

const words = (s: string) => s.split(/\s+/).filter((w) => w && w !== "-").length;

describe("extractiveSummary", () => {
  it("keeps the most central sentence when only one fits", () => {
    // The fifth sentence shares the most words (council, vote, March, bridge, cost, engineers) with the rest.
    expect(extractiveSummary(BRIDGE, { maxWords: 20, style: "concise" })).toBe(sentences(BRIDGE)[4]);
  });

  it("keeps whole sentences in their original order within the word limit", () => {
    const all = sentences(BRIDGE);
    const out = extractiveSummary(BRIDGE, { maxWords: 60, style: "detailed" });
    expect(words(out)).toBeLessThanOrEqual(60);
    const kept = all.filter((s) => out.includes(s));
    expect(kept.length).toBeGreaterThan(1);
    expect(out).toBe(kept.join(" "));
    expect(out).not.toContain("biscuits");
  });

  it("writes bullets as one `- ` line per kept sentence", () => {
    const out = extractiveSummary(BRIDGE, { maxWords: 60, style: "bullets" });
    const lines = out.split("\n");
    expect(lines.length).toBeGreaterThan(1);
    for (const l of lines) {
      expect(l.startsWith("- ")).toBe(true);
      expect(sentences(BRIDGE)).toContain(l.slice(2));
    }
    expect(words(out)).toBeLessThanOrEqual(60);
  });

  it("is longer in the detailed style than in the concise one, and concise is one paragraph", () => {
    const concise = extractiveSummary(BRIDGE, { maxWords: 200, style: "concise" });
    const detailed = extractiveSummary(BRIDGE, { maxWords: 200, style: "detailed" });
    expect(words(detailed)).toBeGreaterThan(words(concise));
    expect(concise).not.toContain("\n");
  });

  it("cuts the best sentence to the limit when none fits whole", () => {
    const out = extractiveSummary(BRIDGE, { maxWords: 5, style: "concise" });
    expect(out).toBe("The council will vote in");
  });

  it("splits lines and list items into sentences, dropping duplicates and markers", () => {
    expect(sentences("- first point\n2. second point! third one?\n\n")).toEqual(["first point", "second point!", "third one?"]);
    expect(extractiveSummary("same. same. same.", { maxWords: 10 })).toBe("same.");
    expect(extractiveSummary("   ", { maxWords: 10 })).toBe("");
  });
});

describe("the offline provider", () => {
  it("recognizes every summarize prompt and nothing else", () => {
    for (const style of ["concise", "detailed", "bullets"] as const) {
      const p = summarizePrompt("Some text.\n\nWith paragraphs.", 42, style);
      expect(readSummarizePrompt(p.messages)).toEqual({ text: "Some text.\n\nWith paragraphs.", max_length: 42, style });
    }
    expect(readSummarizePrompt([{ role: "user", content: "Summarize in 5 words or less:\n\nhi" }])).toBeUndefined();
  });

  it("summarizes a summarize prompt without a label and still echoes a chat, labelled", async () => {
    const p = createOfflineProvider();
    const s = summarizePrompt(BRIDGE, 20, "concise");
    const summary = await p.complete(s.messages, { max_tokens: s.max_tokens });
    expect(summary.content).toBe(sentences(BRIDGE)[4]);
    const chat = await p.complete([{ role: "user", content: "hello there" }], {});
    expect(chat.content).toBe("[offline] hello there");
  });
});

describe("summarize over NATS with the offline provider", () => {
  const svc = useService();

  it("answers style bullets with `- ` lines taken from the text, within max_length", async () => {
    const r = await request(svc.nc, endpointSubject("rosey", "summarize"), { text: BRIDGE, style: "bullets", max_length: 50 });
    expect(r.body).toMatchObject({ success: true, provider: "offline" });
    const lines: string[] = r.body.summary.split("\n");
    expect(lines.length).toBeGreaterThan(1);
    for (const l of lines) expect(sentences(BRIDGE)).toContain(l.replace(/^- /, ""));
    expect(lines.every((l) => l.startsWith("- "))).toBe(true);
    expect(words(r.body.summary)).toBeLessThanOrEqual(50);
  });
});
