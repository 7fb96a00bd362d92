// The provider registry: the fallback chain with a circuit breaker per provider and one
// hard deadline per call. A call goes to the first provider whose breaker lets it through,
// moves on when that provider fails, and ends with either an answer or one clean
// RoseyError before the deadline.
//
// What counts against a provider's health: outages (429/5xx after retries, timeouts,
// refused connections, malformed bodies, the deadline passing while it was being called)
// and final errors that make it useless for every request (401/403 bad key, 404 unknown
// model). A 400/422 says *this request* is unacceptable, not that the provider is down: it
// neither marks the provider unhealthy nor falls through to the next provider (that would
// hide a caller's mistake behind another model's answer); it ends the call as provider_error.
//
// A streamed call (onDelta) falls back like any other until the first piece of a reply went
// to the caller; after that, a failure ends the call: another model would not continue the
// same reply.
import type { Config } from "../config";
import type { Completion, CompletionOptions, Providers } from "../context/types";
import { RoseyError } from "../errors";
import type { Message, ProviderStatus } from "../schemas";
import { classifyFailure, isProviderFailure, ProviderFailure, redactSecrets, shortFailure } from "./errors";
import { Health, providerStatus } from "./health";
import { createOfflineProvider } from "./offline";
import { createOpenAIProvider } from "./openai";
import { DEFAULT_BACKOFF, isDeadlineReason } from "./retry";
import { estimateTokens } from "./tokens";
import type { DeadlineProvider, ProvidersDeps } from "./types";

interface Entry {
  name: string;
  provider: DeadlineProvider;
  health: Health;
}

/** Final errors that say the provider itself is unusable (key, permissions, model), not the request. */
export const PROVIDER_WIDE = new Set(["auth", "not_found"]);

/** Builds the registry for `config.providers.chain`; throws at start-up for a chain name without a definition. */
export function createProviders(config: Config, deps: ProvidersDeps): Providers {
  const cfg = config.providers;
  const log = deps.log.child({ component: "providers" });
  // API keys and every configured header value (an OpenRouter referer, a gateway's token).
  const secrets = Object.values(cfg.defs).flatMap((d) => [d.api_key, ...Object.values(d.headers ?? {})]);
  const scrub = (text: string) => redactSecrets(text, secrets);
  const backoff = { ...DEFAULT_BACKOFF, ...deps.backoff };

  const entries: Entry[] = cfg.chain.map((name) => {
    const def = cfg.defs[name];
    if (!def) throw new Error(`providers.chain: unknown provider "${name}" (defined: ${Object.keys(cfg.defs).join(", ")})`);
    const provider: DeadlineProvider =
      def.kind === "offline"
        ? createOfflineProvider(def.model, name)
        : createOpenAIProvider({ name, def, deadline_ms: cfg.deadline_ms, log, fetch: deps.fetch, backoff, random: deps.random });
    return { name, provider, health: new Health(cfg.failure_threshold, cfg.cooldown_ms, deps.clock) };
  });
  const byName = new Map(entries.map((e) => [e.name, e]));
  log.info("provider chain", { chain: cfg.chain, why: cfg.chain_reason });

  const iso = (ms: number) => new Date(ms).toISOString();
  const secondsUntil = (ms: number) => Math.max(1, Math.ceil((ms - deps.clock.now()) / 1000));

  /** The entry a forced call goes to, or a validation error naming the provider. */
  function forced(name: string): Entry {
    const e = byName.get(name);
    if (e) return e;
    if (cfg.defs[name]) {
      throw new RoseyError("validation", `provider: "${name}" is not enabled (enabled: ${cfg.chain.join(", ")})`, { provider: name });
    }
    throw new RoseyError("validation", `provider: unknown provider "${name}" (enabled: ${cfg.chain.join(", ")})`, { provider: name });
  }

  /** Why a breaker refused a call, for messages. */
  function refusal(e: Entry): string {
    const s = e.health.snapshot();
    if (s.state === "open" && s.cooldown_until !== undefined) {
      return `${e.name}: cooling down until ${iso(s.cooldown_until)} after ${s.consecutive_failures} failures (last error: ${s.last_error ?? "unknown"})`;
    }
    return `${e.name}: a recovery probe is in flight`;
  }

  /** Anything a provider threw, as a classified failure with a scrubbed message. */
  function asFailure(name: string, err: unknown, signal: AbortSignal): ProviderFailure {
    if (isProviderFailure(err)) return err;
    // The offline provider and any plain Provider throw the signal's reason when aborted.
    const info = signal.aborted
      ? classifyFailure({ aborted: isDeadlineReason(signal.reason) ? "deadline" : "caller" })
      : classifyFailure({ message: scrub(err instanceof Error ? err.message : String(err)) });
    return new ProviderFailure(name, info);
  }

  /** The one error a call ends with when no provider answered. */
  function exhausted(targets: Entry[], failures: ProviderFailure[], skipped: Entry[], isForced: boolean, signal: AbortSignal, ownDeadline: boolean): RoseyError {
    const details = [...failures.map((f) => shortFailure(f.provider, f.info)), ...skipped.map(refusal)];
    const untried = targets.filter((e) => !skipped.includes(e) && !failures.some((f) => f.provider === e.name));
    if (untried.length) details.push(`${untried.map((e) => e.name).join(", ")}: not tried, no time left`);
    const deadline = signal.aborted || failures.some((f) => f.info.reason === "deadline");
    const wide = failures.find((f) => f.info.kind === "final" && PROVIDER_WIDE.has(f.info.reason));
    const head = deadline
      ? ownDeadline
        ? `No provider answered within the ${cfg.deadline_ms} ms deadline`
        : "No provider answered before the request deadline"
      : isForced
        ? `Provider ${targets[0].name} is unavailable`
        : "All providers failed";
    const message = `${head}: ${details.join("; ")}`;
    const provider = wide?.provider ?? failures[failures.length - 1]?.provider ?? skipped[0]?.name ?? targets[0].name;
    if (wide && !deadline) return new RoseyError("provider_error", message, { provider });
    // Tell the caller when trying again is worth it: the earliest cooldown end or server hint.
    const waits = [
      ...skipped.map((e) => e.health.snapshot().cooldown_until).filter((t): t is number => t !== undefined).map(secondsUntil),
      ...failures.map((f) => f.info.retry_after_ms).filter((t): t is number => t !== undefined).map((ms) => Math.max(1, Math.ceil(ms / 1000))),
    ];
    return new RoseyError("provider_unavailable", message, waits.length ? { provider, retry_after: Math.min(...waits) } : { provider });
  }

  return {
    async complete(messages: Message[], options: CompletionOptions = {}): Promise<Completion> {
      const started = performance.now();
      const targets = options.provider !== undefined ? [forced(options.provider)] : entries;
      // One deadline for the whole chain, fallbacks included; the caller's signal can cut it shorter.
      // One controller and one timer, both let go when the call ends: AbortSignal.timeout with
      // AbortSignal.any kept a timer and two signals alive for deadline_ms after every call.
      const ctl = new AbortController();
      let deadlinePassed = false;
      const timer = setTimeout(() => {
        deadlinePassed = true;
        // The reason AbortSignal.timeout gives, which isDeadlineReason reads as the deadline.
        ctl.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError"));
      }, cfg.deadline_ms);
      timer.unref();
      const caller = options.signal;
      const onCallerAbort = () => ctl.abort(caller!.reason);
      if (caller?.aborted) ctl.abort(caller.reason);
      else caller?.addEventListener("abort", onCallerAbort, { once: true });
      const signal = ctl.signal;
      const deadlineAt = started + cfg.deadline_ms;
      try {
        const callOptions: CompletionOptions = {};
        if (options.temperature !== undefined) callOptions.temperature = options.temperature;
        if (options.max_tokens !== undefined) callOptions.max_tokens = options.max_tokens;
        let sent = false;
        const onDelta = options.onDelta;
        if (onDelta) {
          callOptions.onDelta = (d) => {
            sent = true;
            onDelta(d);
          };
        }

        const failures: ProviderFailure[] = [];
        const skipped: Entry[] = [];
        for (const e of targets) {
          if (signal.aborted) break;
          if (!e.health.acquire()) {
            skipped.push(e);
            continue;
          }
          const wasDown = e.health.state() !== "closed";
          try {
            const reply = await e.provider.complete(messages, callOptions, signal, deadlineAt);
            e.health.success();
            if (wasDown) log.info("provider recovered", { provider: e.name });
            return { ...reply, latency_ms: performance.now() - started };
          } catch (err) {
            const f = asFailure(e.name, err, signal);
            if (f.info.reason === "aborted") {
              e.health.neutral();
              const when = sent ? "while the reply was being sent" : "before a provider answered";
              throw new RoseyError("provider_unavailable", `Request cancelled ${when}`, { provider: e.name });
            }
            if (f.info.kind === "final" && !PROVIDER_WIDE.has(f.info.reason) && f.info.reason !== "deadline") {
              e.health.neutral();
              log.warn("provider rejected the request", { provider: e.name, reason: f.info.reason, status: f.info.status, error: scrub(f.info.message) });
              throw new RoseyError("provider_error", `Provider ${shortFailure(e.name, f.info)} rejected the request`, { provider: e.name });
            }
            e.health.failure(shortFailure(e.name, f.info));
            failures.push(f);
            const snap = e.health.snapshot();
            log.warn("provider failed", {
              provider: e.name,
              reason: f.info.reason,
              status: f.info.status,
              error: scrub(f.info.message),
              attempts: f.attempts,
              consecutive_failures: snap.consecutive_failures,
              cooldown_until: snap.state === "open" && snap.cooldown_until ? iso(snap.cooldown_until) : undefined,
            });
            if (sent) {
              throw new RoseyError("provider_unavailable", `Provider ${shortFailure(e.name, f.info)} failed while the reply was being sent`, {
                provider: e.name,
              });
            }
            if (f.info.reason === "deadline") break;
          }
        }
        throw exhausted(targets, failures, skipped, options.provider !== undefined, signal, deadlinePassed);
      } finally {
        clearTimeout(timer);
        caller?.removeEventListener("abort", onCallerAbort);
      }
    },

    status(): ProviderStatus[] {
      return entries.map((e) => providerStatus(e.name, e.provider.model, e.health.snapshot()));
    },

    current() {
      const e = entries.find((x) => x.health.available()) ?? entries[0];
      return { name: e.name, model: e.provider.model };
    },

    estimateTokens,
  };
}
