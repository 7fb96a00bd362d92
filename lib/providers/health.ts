// Health of one provider as a circuit breaker: closed (healthy) → after `threshold`
// consecutive failures open (skipped) until the cooldown ends → half-open (one probe call
// may go; success closes, failure re-opens for another cooldown).
//
// Health is per instance, in memory: it is each instance's own view of the network path to
// a provider, and a fresh instance should probe for itself rather than trust a stale verdict.
import type { Clock } from "../context/types";
import type { ProviderStatus } from "../schemas";

/** Where the breaker stands now. */
export type HealthState = "closed" | "open" | "half_open";

/** A copy of a breaker's numbers, for status. */
export interface HealthSnapshot {
  state: HealthState;
  consecutive_failures: number;
  cooldown_until?: number;
  last_error?: string;
}

/** The circuit breaker of one provider. */
export class Health {
  private failures = 0;
  private cooldownUntil: number | undefined;
  private lastError: string | undefined;
  private probing = false;

  constructor(
    private readonly threshold: number,
    private readonly cooldownMs: number,
    private readonly clock: Clock,
  ) {}

  /** The state at the clock's current time. */
  state(): HealthState {
    if (this.failures < this.threshold || this.cooldownUntil === undefined) return "closed";
    return this.clock.now() < this.cooldownUntil ? "open" : "half_open";
  }

  /** True when a call could go now: closed, or half-open with no probe in flight. */
  available(): boolean {
    const s = this.state();
    return s === "closed" || (s === "half_open" && !this.probing);
  }

  /**
   * Claims the right to call. In half-open only the first claimant gets it (the probe);
   * everyone else is refused until the probe reports back.
   */
  acquire(): boolean {
    const s = this.state();
    if (s === "closed") return true;
    if (s === "open" || this.probing) return false;
    this.probing = true;
    return true;
  }

  /** The call answered: the provider is healthy again. */
  success(): void {
    this.failures = 0;
    this.cooldownUntil = undefined;
    this.probing = false;
  }

  /** The call failed in a way that says the provider is down or unusable. */
  failure(message: string): void {
    this.failures++;
    this.lastError = message;
    this.probing = false;
    if (this.failures >= this.threshold) this.cooldownUntil = this.clock.now() + this.cooldownMs;
  }

  /** The call ended without a verdict on the provider (a bad request, a cancelled caller). */
  neutral(): void {
    this.probing = false;
  }

  /** Numbers for status. */
  snapshot(): HealthSnapshot {
    const snap: HealthSnapshot = { state: this.state(), consecutive_failures: this.failures };
    if (this.cooldownUntil !== undefined) snap.cooldown_until = this.cooldownUntil;
    if (this.lastError !== undefined) snap.last_error = this.lastError;
    return snap;
  }
}

/** A provider's entry in status, from its breaker's numbers. */
export function providerStatus(name: string, model: string, s: HealthSnapshot): ProviderStatus {
  const st: ProviderStatus = { name, model, healthy: s.state === "closed", consecutive_failures: s.consecutive_failures };
  if (s.last_error !== undefined) st.last_error = s.last_error;
  if (s.state !== "closed" && s.cooldown_until !== undefined) st.cooldown_until = new Date(s.cooldown_until).toISOString();
  return st;
}
