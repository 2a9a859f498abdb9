/**
 * A request's turn on its session: while one request of a client runs, the client's other
 * requests for the same session wait, wherever they arrived. So a handler's
 * read-modify-write of `req.session` (`req.session.count++`) never loses an update, which a
 * store behind express-session cannot promise.
 *
 * Two levels, because most concurrent requests of one client reach the same process:
 * - `LocalTurns`: requests in this process queue in arrival order, without asking anyone;
 * - the session actor's lease (`HttpSession.open` with a token), taken in one of the actor's
 *   turns: a request on another node that finds it held asks again after a short backoff.
 *   A lease runs out after `leaseMs`, so a node that died mid-request blocks nobody for long.
 */
import { Unavailable } from '@wadi/core';

/** Waiting for a session's turn took longer than allowed. */
export class SessionBusy extends Unavailable {
  /** The HTTP status the middleware answers with. */
  readonly status = 503;
}

export class LocalTurns {
  readonly #tails = new Map<string, Promise<void>>();

  /**
   * Waits until every earlier request for `key` in this process has released its turn, then
   * resolves with this request's release (idempotent). Rejects with `SessionBusy` after
   * `timeoutMs`; later requests still wait for the earlier ones, never for this one. A turn held
   * for `leaseMs` is given up by itself, as the session actor's lease is (a streaming response,
   * a handler that never ends): the next request goes on, and the late one's save is refused.
   */
  async acquire(key: string, timeoutMs: number, leaseMs = Infinity): Promise<() => void> {
    const previous = this.#tails.get(key);
    let resolveMine!: () => void;
    const mine = new Promise<void>((resolve) => (resolveMine = resolve));
    let expiry: NodeJS.Timeout | undefined;
    const release = (): void => {
      clearTimeout(expiry);
      resolveMine();
    };
    const tail = previous === undefined ? mine : previous.then(() => mine);
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    if (previous !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        previous.then(() => false),
        new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        release();
        throw new SessionBusy(`the session's earlier requests did not finish within ${timeoutMs} ms`);
      }
    }
    if (Number.isFinite(leaseMs)) {
      expiry = setTimeout(release, leaseMs);
      expiry.unref();
    }
    return release;
  }

  /** Sessions with a request running or waiting here. */
  get size(): number {
    return this.#tails.size;
  }
}

/** Delays between asks for a lease held elsewhere: short first, as most requests are short. */
const BACKOFF_MS = [2, 5, 10, 20, 40, 80, 100];

/**
 * Calls `attempt` until it returns something other than `busy`, waiting a growing backoff
 * between tries; throws `SessionBusy` once `timeoutMs` has passed.
 */
export async function withBackoff<T>(attempt: () => Promise<T | 'busy'>, timeoutMs: number, onRetry: () => void): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (let tries = 0; ; tries++) {
    const outcome = await attempt();
    if (outcome !== 'busy') return outcome;
    const wait = BACKOFF_MS[Math.min(tries, BACKOFF_MS.length - 1)]!;
    if (performance.now() + wait > deadline) throw new SessionBusy(`another request held the session for more than ${timeoutMs} ms`);
    onRetry();
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}
