// How far a KV watch has come. A mirror fed by a watch (memory, personas) waits here until
// the watch has delivered a revision it knows was written — its own barrier write — which
// means the mirror holds every write acknowledged before that one, on any instance.

/** The highest revision a watch delivered, and callers waiting for a revision. */
export class WatchProgress {
  /** Highest revision delivered so far. */
  seen = 0;
  private waiters: Array<{ revision: number; done: (caughtUp: boolean) => void }> = [];

  /** Records a delivered revision and wakes the waiters it satisfies. */
  advance(revision: number): void {
    if (revision <= this.seen) return;
    this.seen = revision;
    if (this.waiters.length === 0) return;
    const due = this.waiters.filter((w) => w.revision <= revision);
    if (due.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.revision > revision);
    for (const w of due) w.done(true);
  }

  /** Resolves true once `revision` has been delivered, false when `timeoutMs` passes first. */
  waitFor(revision: number, timeoutMs: number): Promise<boolean> {
    if (this.seen >= revision) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.done !== done);
        resolve(false);
      }, timeoutMs);
      const done = (caughtUp: boolean) => {
        clearTimeout(timer);
        resolve(caughtUp);
      };
      this.waiters.push({ revision, done });
    });
  }

  /** Wakes every waiter at once (the watch is stopping): they no longer wait for it. */
  releaseAll(): void {
    const all = this.waiters;
    this.waiters = [];
    for (const w of all) w.done(true);
  }
}
