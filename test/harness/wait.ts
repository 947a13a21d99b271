// Test helpers that wait on conditions instead of sleeping: a poller, a
// deferred value and a count-down latch, each with a deadline.
import { setTimeout as delay } from "node:timers/promises";
import { inspect } from "node:util";

/** Thrown when a wait in this module reaches its deadline. */
export class WaitTimeoutError extends Error {
  override readonly name = "WaitTimeoutError";
  readonly code = "WAIT_TIMEOUT";
  /** What was being waited for, as given by the caller. */
  readonly what: string;
  /** The deadline that was reached, in milliseconds. */
  readonly timeoutMs: number;

  constructor(what: string, timeoutMs: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.what = what;
    this.timeoutMs = timeoutMs;
  }
}

/** Options for {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this many milliseconds. Default: 10000. */
  timeoutMs?: number;
  /** Pause between attempts, in milliseconds. Default: 25. */
  intervalMs?: number;
  /** Names the condition in the timeout error. Default: "condition". */
  what?: string;
}

/** Options for the `wait()` of {@link Deferred} and {@link Latch}. */
export interface WaitOptions {
  /** Give up after this many milliseconds. Default: 10000. */
  timeoutMs?: number;
  /** Names what is awaited in the timeout error. */
  what?: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_INTERVAL_MS = 25;
const TIMED_OUT: unique symbol = Symbol("timed out");

/** Resolves after `ms` milliseconds. Prefer {@link waitFor} in tests. */
export function sleep(ms: number): Promise<void> {
  return delay(ms);
}

/**
 * Calls `fn` until it returns a truthy value without throwing, and resolves
 * with that value. An attempt that throws or returns a falsy value is retried
 * after `intervalMs`; assertion-style callbacks must therefore end with
 * `return true`. An attempt that is still pending at the deadline is
 * abandoned. On timeout, rejects with a {@link WaitTimeoutError} that names
 * `what`, carries the last error as `cause`, and whose stack shows the caller.
 *
 * Defaults: `timeoutMs` 10000 ms, `intervalMs` 25 ms.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const intervalMs = opts.intervalMs ?? DEFAULT_INTERVAL_MS;
  const what = opts.what ?? "condition";
  const callSite = new Error(); // created here so the timeout error shows the caller
  const deadline = Date.now() + timeoutMs;
  let attempts = 0;
  let lastError: unknown;
  let hasError = false;
  let lastValue: unknown;
  let pending = false;

  for (;;) {
    attempts += 1;
    try {
      const value = await raceDeadline(Promise.resolve().then(fn), deadline - Date.now());
      if (value === TIMED_OUT) {
        pending = true;
        break;
      }
      if (value) return value as NonNullable<T>;
      lastValue = value;
      hasError = false;
    } catch (err) {
      lastError = err;
      hasError = true;
    }
    const remainingMs = deadline - Date.now();
    if (remainingMs <= 0) break;
    await delay(Math.min(intervalMs, remainingMs));
  }

  let detail: string;
  if (pending) detail = "the last attempt was still pending";
  else if (hasError) detail = `last error: ${describe(lastError)}`;
  else detail = `last value: ${inspect(lastValue)}`;
  const err = new WaitTimeoutError(
    what,
    timeoutMs,
    `timed out after ${timeoutMs} ms waiting for ${what} (${attempts} attempts; ${detail})`,
    hasError ? { cause: lastError } : undefined,
  );
  err.stack = withCallerStack(err, callSite);
  throw err;
}

/**
 * Resolves or rejects with `promise`, or rejects with a
 * {@link WaitTimeoutError} after `timeoutMs` milliseconds (default 10000).
 */
export async function withTimeout<T>(promise: Promise<T>, opts: WaitOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const what = opts.what ?? "promise";
  const callSite = new Error();
  const value = await raceDeadline(promise, timeoutMs);
  if (value === TIMED_OUT) {
    const err = new WaitTimeoutError(what, timeoutMs, `timed out after ${timeoutMs} ms waiting for ${what}`);
    err.stack = withCallerStack(err, callSite);
    throw err;
  }
  return value;
}

/** A promise with its `resolve`/`reject` exposed; settles once, later calls are ignored. */
export class Deferred<T = void> {
  readonly promise: Promise<T>;
  #resolve!: (value: T) => void;
  #reject!: (reason: unknown) => void;
  #settled = false;

  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // A rejection nobody waits for is not an unhandled rejection of the test.
    this.promise.catch(() => undefined);
  }

  /** True once `resolve` or `reject` was called. */
  get settled(): boolean {
    return this.#settled;
  }

  resolve(value: T): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(value);
  }

  reject(reason: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#reject(reason);
  }

  /** Waits for the value; rejects with a {@link WaitTimeoutError} after `timeoutMs` (default 10000 ms). */
  wait(opts: WaitOptions = {}): Promise<T> {
    return withTimeout(this.promise, { what: "deferred value", ...opts });
  }
}

/** Opens after `count` calls to {@link Latch.countDown}. */
export class Latch {
  #remaining: number;
  readonly #opened = new Deferred<void>();

  /** @param count calls to `countDown()` needed to open the latch. Default: 1. */
  constructor(count = 1) {
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`latch count must be a non-negative integer, got ${count}`);
    this.#remaining = count;
    if (count === 0) this.#opened.resolve();
  }

  /** Calls still needed before the latch opens. */
  get remaining(): number {
    return this.#remaining;
  }

  /** True once the latch has opened. */
  get isOpen(): boolean {
    return this.#remaining === 0;
  }

  countDown(): void {
    if (this.#remaining === 0) return;
    this.#remaining -= 1;
    if (this.#remaining === 0) this.#opened.resolve();
  }

  /** Waits for the latch to open; rejects with a {@link WaitTimeoutError} after `timeoutMs` (default 10000 ms). */
  wait(opts: WaitOptions = {}): Promise<void> {
    return withTimeout(this.#opened.promise, { what: "latch", ...opts });
  }
}

async function raceDeadline<T>(promise: Promise<T>, remainingMs: number): Promise<T | typeof TIMED_OUT> {
  const ac = new AbortController();
  const timer = delay<typeof TIMED_OUT>(Math.max(0, remainingMs), TIMED_OUT, { signal: ac.signal }).catch(
    (): typeof TIMED_OUT => TIMED_OUT,
  );
  try {
    return await Promise.race([promise, timer]);
  } finally {
    ac.abort();
  }
}

function withCallerStack(err: Error, callSite: Error): string {
  const frames = (callSite.stack ?? "").split("\n").slice(1).join("\n");
  return `${err.name}: ${err.message}\n${frames}`;
}

function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return inspect(err);
}
