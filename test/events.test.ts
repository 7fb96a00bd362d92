import { describe, expect, it } from "vitest";
import { createEvents, envelope, eventSubject } from "../lib/events";
import { createLogger } from "../lib/log";

const dec = new TextDecoder();
const clock = { now: () => Date.parse("2026-01-02T03:04:05.000Z") };
const response = {
  channel: "#c",
  user: "u",
  prompt_length: 5,
  response_length: 7,
  tokens_used: 12,
  provider: "offline",
  latency_ms: 2,
  model: "m",
};

describe("events", () => {
  it("wraps a payload in the contract's envelope", () => {
    const e = envelope("response", response, { id: "id-1", timestamp: "2026-01-02T03:04:05.000Z", service: "rosey-llm", instance: "i1" });
    expect(e).toEqual({
      event: "response",
      version: 1,
      id: "id-1",
      timestamp: "2026-01-02T03:04:05.000Z",
      source: { service: "rosey-llm", instance: "i1" },
      ...response,
    });
  });

  it("refuses an invalid payload before publishing anything", () => {
    const sent: string[] = [];
    const ev = createEvents({ prefix: "rosey", service: "s", instance: "i", clock, log: createLogger("silent"), sink: async (s) => void sent.push(s) });
    expect(() => ev.emit("response", { ...response, tokens_used: -1 })).toThrow();
    expect(() => ev.emit("memory", { channel: "c", action: "steal", user_id: null, memory_count: 0 } as never)).toThrow();
    expect(sent).toEqual([]);
  });

  it("publishes to the event's subject with the id as dedupe id, and flush waits", async () => {
    const sent: Array<{ subject: string; body: any; id: string }> = [];
    const ev = createEvents({
      prefix: "rosey",
      service: "s",
      instance: "i",
      clock,
      log: createLogger("silent"),
      sink: async (subject, data, id) => {
        await new Promise((r) => setTimeout(r, 20));
        sent.push({ subject, body: JSON.parse(dec.decode(data)), id });
      },
    });
    const id = ev.emit("usage.threshold", { user: "u", channel: null, threshold_type: "daily", current: 400, limit: 500 }, { id: "fixed" });
    expect(id).toBe("fixed");
    expect(sent).toHaveLength(0); // in the background
    await ev.flush();
    expect(sent).toEqual([
      {
        subject: "rosey.event.llm.usage.threshold",
        id: "fixed",
        body: expect.objectContaining({ event: "usage.threshold", id: "fixed", timestamp: "2026-01-02T03:04:05.000Z", current: 400 }),
      },
    ]);
    expect(eventSubject("bot", "error")).toBe("bot.event.llm.error");
  });

  it("retries a failed publish, then logs and gives up", async () => {
    let calls = 0;
    const lines: string[] = [];
    const ev = createEvents({
      prefix: "rosey",
      service: "s",
      instance: "i",
      clock,
      attempts: 2,
      log: createLogger("error", {}, (l) => lines.push(l)),
      sink: async () => {
        calls++;
        throw new Error("no responders");
      },
    });
    ev.emit("summarized", { channel: "c", message_count: 3, summary_length: 10 });
    await ev.flush();
    expect(calls).toBe(2);
    expect(JSON.parse(lines[0])).toMatchObject({ level: "error", msg: "event publish failed" });
  });
});

describe("logger", () => {
  it("writes one JSON object per line, filtered by level, with secrets redacted", () => {
    const lines: string[] = [];
    const log = createLogger("info", { svc: "x" }, (l) => lines.push(l)).child({ instance: "i" });
    log.debug("hidden");
    log.info("hello", { api_key: "sk-secret", NATS_PASSWORD: "pw", n: 1 });
    log.warn("w");
    log.error("e");
    expect(lines).toHaveLength(3);
    const first = JSON.parse(lines[0]);
    expect(first).toMatchObject({ level: "info", msg: "hello", svc: "x", instance: "i", n: 1, api_key: "[redacted]", NATS_PASSWORD: "[redacted]" });
    expect(lines.join("\n")).not.toContain("sk-secret");
  });
});
