import { describe, expect, it } from "vitest";
import { ConfigError, defaultConfig, loadConfig, settingName } from "../lib/config";

/** The ConfigError `f` throws (fails the test when it throws nothing or something else). */
function rejection(f: () => unknown): ConfigError {
  try {
    f();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("configuration", () => {
  it("has the contract's defaults with an empty environment", () => {
    const c = loadConfig({});
    expect(c.subject_prefix).toBe("rosey");
    expect(c.providers.chain).toEqual(["offline"]);
    expect(c.limits).toMatchObject({
      user_per_minute: 10,
      user_per_hour: 100,
      user_per_day: 500,
      user_tokens_per_day: 50_000,
      channel_per_hour: 300,
      global_tokens_per_day: 1_000_000,
      threshold: 0.8,
    });
    expect(c.timezone).toBe("UTC");
    expect(c.replicas).toBe(1);
    expect(c.events.max_age_days).toBe(30);
    expect(c.nats.servers).toBeUndefined();
    expect(c.providers.defs.ollama.base_url).toBe("http://localhost:11434/v1");
    expect(c.providers.defs.ollama.model).toBe("llama3.2");
    expect(c.providers.defs.openai.model).toBe("gpt-4o-mini");
  });

  it("reads environment variables", () => {
    const c = loadConfig({
      NATS_URL: "nats://a:4222, nats://b:4222",
      LLM_PROVIDERS: "openai,offline",
      OPENAI_API_KEY: "sk-test",
      OPENAI_BASE_URL: "http://127.0.0.1:9/v1",
      ROSEY_LIMIT_USER_PER_MINUTE: "7",
      ROSEY_TIMEZONE: "Europe/Berlin",
      ROSEY_REPLICAS: "3",
      ROSEY_EXEMPT_USERS: "trivia-bot, inspector",
    });
    expect(c.nats.servers).toEqual(["nats://a:4222", "nats://b:4222"]);
    expect(c.providers.chain).toEqual(["openai", "offline"]);
    expect(c.providers.defs.openai).toMatchObject({ api_key: "sk-test", base_url: "http://127.0.0.1:9/v1" });
    expect(c.limits.user_per_minute).toBe(7);
    expect(c.timezone).toBe("Europe/Berlin");
    expect(c.replicas).toBe(3);
    expect(c.limits.exempt_users).toEqual(["trivia-bot", "inspector"]);
  });

  it("reads a JSON file, with the environment winning", () => {
    const file = JSON.stringify({
      limits: { user_per_minute: 3, channels: { "#busy": { per_hour: 1000 } } },
      memory: { history_messages: 8 },
      personas: { pirate: { description: "Arr", system_prompt: "Talk like a pirate." } },
    });
    const c = loadConfig({ ROSEY_CONFIG: "/x.json", ROSEY_LIMIT_USER_PER_HOUR: "50" }, () => file);
    expect(c.limits.user_per_minute).toBe(3);
    expect(c.limits.user_per_hour).toBe(50);
    expect(c.limits.channels["#busy"].per_hour).toBe(1000);
    expect(c.memory.history_messages).toBe(8);
    expect(c.personas.pirate.system_prompt).toBe("Talk like a pirate.");
  });

  it.each([
    [{ ROSEY_LIMIT_USER_PER_MINUTE: "ten" }, /ROSEY_LIMIT_USER_PER_MINUTE/],
    [{ ROSEY_LIMIT_USER_PER_MINUTE: "-1" }, /ROSEY_LIMIT_USER_PER_MINUTE/],
    [{ ROSEY_THRESHOLD: "1.5" }, /ROSEY_THRESHOLD/],
    [{ ROSEY_TIMEZONE: "Mars/Olympus" }, /ROSEY_TIMEZONE/],
    [{ ROSEY_SUBJECT_PREFIX: "a.b" }, /ROSEY_SUBJECT_PREFIX/],
    [{ LLM_PROVIDERS: "openai,nope" }, /LLM_PROVIDERS.*nope/],
    [{ OPENAI_BASE_URL: "not a url" }, /OPENAI_BASE_URL/],
    [{ LOG_LEVEL: "loud" }, /LOG_LEVEL/],
    [{ ROSEY_REPLICAS: "9" }, /ROSEY_REPLICAS/],
    [{ ROSEY_NATS_PORT: "70000" }, /ROSEY_NATS_PORT/],
  ])("stops with one message naming the setting: %o", (env, re) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(re);
  });

  it("names the file and the JSON path for bad file content", () => {
    expect(() => loadConfig({ ROSEY_CONFIG: "/x.json" }, () => "{not json")).toThrow(/ROSEY_CONFIG.*\/x.json/);
    expect(() => loadConfig({ ROSEY_CONFIG: "/x.json" }, () => "[1]")).toThrow(/JSON object/);
    expect(() => loadConfig({ ROSEY_CONFIG: "/x.json" }, () => '{"memory":{"history_messages":0}}')).toThrow(
      /memory.history_messages/,
    );
    expect(() => loadConfig({ ROSEY_CONFIG: "/x.json" }, () => '{"limitz":{}}')).toThrow(/limitz/);
  });

  it("never quotes a setting's value: a malformed file is placed by line and column, not quoted", () => {
    const key = "sk-live-4f9a1c2e8b7d6a5f";
    const file = `{\n  "providers": {"defs": {"openai": {"api_key": ${key}}}}\n}`;
    const err = rejection(() => loadConfig({ ROSEY_CONFIG: "/etc/rosey.json" }, () => file));
    expect(err.message).toMatch(/^ROSEY_CONFIG: \/etc\/rosey.json is not valid JSON( at line 2, column \d+)?$/);
    expect(err.message).not.toContain("sk-live");
    const unquoted = rejection(() => loadConfig({ ROSEY_CONFIG: "/etc/rosey.json" }, () => `{\n  ${key}: 1}`));
    expect(unquoted.message).toBe("ROSEY_CONFIG: /etc/rosey.json is not valid JSON at line 2, column 3");
    const missing = rejection(() =>
      loadConfig({ ROSEY_CONFIG: "/nope.json" }, () => {
        throw Object.assign(new Error(`ENOENT: no such file or directory, open '/nope.json' ${key}`), { code: "ENOENT" });
      }),
    );
    expect(missing.message).toBe("ROSEY_CONFIG: cannot read /nope.json (ENOENT)");
    const badNumber = rejection(() => loadConfig({ ROSEY_LIMIT_USER_PER_MINUTE: key }));
    expect(badNumber.message).toMatch(/ROSEY_LIMIT_USER_PER_MINUTE/);
    expect(badNumber.message).not.toContain("sk-live");
    const badLevel = rejection(() => loadConfig({ LOG_LEVEL: key }));
    expect(badLevel.message).toMatch(/LOG_LEVEL/);
    expect(badLevel.message).not.toContain("sk-live");
  });

  it("has storage limits by default, each settable from the environment or the file", () => {
    const MiB = 2 ** 20;
    expect(loadConfig({}).events).toEqual({ max_age_days: 30, max_bytes: 1024 * MiB });
    expect(loadConfig({}).storage).toEqual({
      limits_max_bytes: 256 * MiB,
      usage_max_bytes: 512 * MiB,
      usage_max_age_days: 400,
      personas_max_bytes: 64 * MiB,
      personas_max_defined: 1000,
      memory_max_bytes: 1024 * MiB,
      history_ttl_days: 30,
      marker_ttl_seconds: 900,
    });
    const env = loadConfig({
      ROSEY_EVENTS_MAX_BYTES: "1000",
      ROSEY_LIMITS_MAX_BYTES: "1001",
      ROSEY_USAGE_MAX_BYTES: "1002",
      ROSEY_USAGE_MAX_AGE_DAYS: "7",
      ROSEY_PERSONAS_MAX_BYTES: "1003",
      ROSEY_PERSONAS_MAX_DEFINED: "12",
      ROSEY_MEMORY_MAX_BYTES: "1004",
      ROSEY_HISTORY_TTL_DAYS: "2",
      ROSEY_MARKER_TTL_SECONDS: "60",
    });
    expect(env.events.max_bytes).toBe(1000);
    expect(env.storage).toEqual({
      limits_max_bytes: 1001,
      usage_max_bytes: 1002,
      usage_max_age_days: 7,
      personas_max_bytes: 1003,
      personas_max_defined: 12,
      memory_max_bytes: 1004,
      history_ttl_days: 2,
      marker_ttl_seconds: 60,
    });
    const file = loadConfig({ ROSEY_CONFIG: "/x.json" }, () => '{"storage":{"memory_max_bytes":5000},"events":{"max_bytes":6000}}');
    expect(file.storage.memory_max_bytes).toBe(5000);
    expect(file.storage.history_ttl_days).toBe(30);
    expect(file.events).toEqual({ max_age_days: 30, max_bytes: 6000 });
  });

  it.each([
    [{ ROSEY_MEMORY_MAX_BYTES: "0" }, /invalid setting ROSEY_MEMORY_MAX_BYTES/],
    [{ ROSEY_MARKER_TTL_SECONDS: "0.5" }, /invalid setting ROSEY_MARKER_TTL_SECONDS/],
    [{ ROSEY_HISTORY_TTL_DAYS: "forever" }, /invalid setting ROSEY_HISTORY_TTL_DAYS/],
    [{ ROSEY_EVENTS_MAX_BYTES: "-1" }, /invalid setting ROSEY_EVENTS_MAX_BYTES/],
  ])("refuses a storage limit that is not a positive whole number: %o", (env, re) => {
    expect(() => loadConfig(env)).toThrow(re);
  });

  it("names a setting by its variable and its file path", () => {
    expect(settingName("storage.memory_max_bytes")).toBe("ROSEY_MEMORY_MAX_BYTES (storage.memory_max_bytes)");
    expect(settingName("memory.decay_days")).toBe("memory.decay_days");
  });

  it("merges overrides one level deep for tests", () => {
    const c = defaultConfig({ limits: { user_per_minute: 2 } as never });
    expect(c.limits.user_per_minute).toBe(2);
    expect(c.limits.user_per_hour).toBe(100);
  });
});

describe("provider chain without LLM_PROVIDERS", () => {
  it.each([
    [{}, ["offline"], "LLM_PROVIDERS unset; no provider key or base URL set → offline"],
    [{ OPENAI_API_KEY: "sk-a" }, ["openai", "offline"], "LLM_PROVIDERS unset; OPENAI_API_KEY set → openai, offline"],
    [{ OPENAI_BASE_URL: "http://127.0.0.1:8080/v1" }, ["openai", "offline"], "LLM_PROVIDERS unset; OPENAI_BASE_URL set → openai, offline"],
    [
      { OPENAI_API_KEY: "sk-a", OPENAI_BASE_URL: "http://127.0.0.1:8080/v1" },
      ["openai", "offline"],
      "LLM_PROVIDERS unset; OPENAI_API_KEY and OPENAI_BASE_URL set → openai, offline",
    ],
    [{ OPENROUTER_API_KEY: "sk-or-a" }, ["openrouter", "offline"], "LLM_PROVIDERS unset; OPENROUTER_API_KEY set → openrouter, offline"],
    [{ OLLAMA_BASE_URL: "http://127.0.0.1:11434/v1" }, ["ollama", "offline"], "LLM_PROVIDERS unset; OLLAMA_BASE_URL set → ollama, offline"],
    [
      { OLLAMA_BASE_URL: "http://127.0.0.1:11434/v1", OPENROUTER_API_KEY: "sk-or-a", OPENAI_API_KEY: "sk-a" },
      ["openai", "openrouter", "ollama", "offline"],
      "LLM_PROVIDERS unset; OPENAI_API_KEY set; OPENROUTER_API_KEY set; OLLAMA_BASE_URL set → openai, openrouter, ollama, offline",
    ],
    // A model name alone configures nothing: it only says which model a configured provider uses.
    [{ OLLAMA_MODEL: "qwen3", OPENAI_MODEL: "gpt-x" }, ["offline"], "LLM_PROVIDERS unset; no provider key or base URL set → offline"],
    [{ LLM_PROVIDERS: "ollama,offline", OPENAI_API_KEY: "sk-a" }, ["ollama", "offline"], "LLM_PROVIDERS set → ollama, offline"],
  ])("%o → %o", (env, chain, why) => {
    const c = loadConfig(env);
    expect(c.providers.chain).toEqual(chain);
    expect(c.providers.chain_reason).toBe(why);
  });

  it("counts providers the ROSEY_CONFIG file gives a key or base URL, and a chain it names", () => {
    const file = { providers: { defs: { openrouter: { api_key: "sk-or-a" }, local: { base_url: "http://127.0.0.1:9000/v1", model: "m" } } } };
    const c = loadConfig({ ROSEY_CONFIG: "/x.json", OLLAMA_BASE_URL: "http://127.0.0.1:11434/v1" }, () => JSON.stringify(file));
    expect(c.providers.chain).toEqual(["openrouter", "ollama", "local", "offline"]);
    expect(c.providers.chain_reason).toBe(
      "LLM_PROVIDERS unset; providers.defs.openrouter in ROSEY_CONFIG; OLLAMA_BASE_URL set; providers.defs.local in ROSEY_CONFIG → openrouter, ollama, local, offline",
    );
    const named = loadConfig({ ROSEY_CONFIG: "/x.json", OPENAI_API_KEY: "sk-a" }, () => JSON.stringify({ providers: { chain: ["offline"] } }));
    expect(named.providers.chain).toEqual(["offline"]);
    expect(named.providers.chain_reason).toBe("providers.chain in ROSEY_CONFIG → offline");
  });
});
