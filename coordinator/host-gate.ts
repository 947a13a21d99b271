/**
 * Keeps freeze windows clear of other migrations' bulk copies on the hosts
 * they involve (many migrations at once: an evacuation).
 *
 * A pre-copy round holds its source and destination hosts shared; a
 * switchover (source freeze to destination activation, with a small final
 * delta) holds them exclusive, and has priority: once a switchover waits
 * for a host, no new round starts there, and the switchover starts when the
 * rounds in flight on its hosts have finished. Holds are taken on all of a
 * migration's hosts at once (never one by one), so no two waiters can hold
 * what the other waits for.
 *
 * The coordinator's own bookkeeping for migrations that are not in their
 * window (record writes, a destination's prepare, a source's release) waits
 * for the windows open at that moment to close (`afterWindows`): on a
 * shared machine it would take the CPU, the NATS server and the journal
 * those windows' final hops and commit need. It does not wait for windows
 * that open later, so it is never starved, only put off by one window's
 * length.
 *
 * The gate only orders work; correctness never depends on it. A waiter
 * that has waited `maxWaitMs` goes ahead anyway, so a stuck round on a host
 * delays a switchover there by at most that long.
 */

interface HostState {
  /** Rounds in flight. */
  shared: number;
  /** Switchovers in their window (more than one only after a wait ran out). */
  exclusive: number;
  /** Switchovers waiting for this host. */
  waiting: number;
}

export type Release = () => void;

export class HostGate {
  private readonly hosts = new Map<string, HostState>();
  private waiters: (() => void)[] = [];
  /** Switchovers in their window now, each settled when it ends. */
  private readonly windows = new Set<Promise<void>>();

  constructor(private readonly maxWaitMs = 2000) {}

  /** Holds the hosts for bulk work (a pre-copy round). */
  shared(hostIds: readonly string[]): Promise<Release> {
    return this.acquire(hostIds, false);
  }

  /**
   * Holds the hosts alone, ahead of bulk work (a switchover). With `wait`
   * false it only keeps new rounds from starting and does not wait for those
   * in flight (a switchover whose guest is already paused: waiting would add
   * to the guest's downtime).
   */
  exclusive(hostIds: readonly string[], wait = true): Promise<Release> {
    return this.acquire(hostIds, true, wait);
  }

  /**
   * Resolves when every switchover holding its hosts now has ended (at once
   * when none does), or after `maxWaitMs`. Windows that start meanwhile are
   * not waited for.
   */
  async afterWindows(): Promise<void> {
    if (this.windows.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.windows), new Promise<void>((resolve) => (timer = setTimeout(resolve, this.maxWaitMs)))]);
    clearTimeout(timer);
  }

  private state(h: string): HostState {
    let s = this.hosts.get(h);
    if (!s) this.hosts.set(h, (s = { shared: 0, exclusive: 0, waiting: 0 }));
    return s;
  }

  private free(states: HostState[], exclusive: boolean): boolean {
    return exclusive ? states.every((s) => s.exclusive === 0 && s.shared === 0) : states.every((s) => s.exclusive === 0 && s.waiting === 0);
  }

  private async acquire(hostIds: readonly string[], exclusive: boolean, wait = true): Promise<Release> {
    const states = [...new Set(hostIds)].map((h) => this.state(h));
    if (wait && !this.free(states, exclusive)) {
      if (exclusive) for (const s of states) s.waiting++;
      const deadline = Date.now() + this.maxWaitMs;
      try {
        while (!this.free(states, exclusive) && Date.now() < deadline) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
            this.waiters.push(() => {
              clearTimeout(timer);
              resolve();
            });
          });
        }
      } finally {
        if (exclusive) for (const s of states) s.waiting--;
      }
    }
    for (const s of states) {
      if (exclusive) s.exclusive++;
      else s.shared++;
    }
    let ended = (): void => undefined;
    const window = exclusive ? new Promise<void>((resolve) => (ended = resolve)) : null;
    if (window) this.windows.add(window);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const s of states) {
        if (exclusive) s.exclusive--;
        else s.shared--;
      }
      if (window) this.windows.delete(window);
      ended();
      this.wakeAll();
    };
  }

  private wakeAll(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const wake of w) wake();
  }
}
