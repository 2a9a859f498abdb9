/**
 * When an HTTP session expires: the one rule, used by the session actor on every access and, as
 * the type's `expiresAt`, by the store (a parked session is dropped from any tier once expired),
 * so the test that makes a session start fresh is the one that drops it.
 *
 * The rule is an idle timeout: every request that opens or saves the session moves its expiry to
 * `now + idleTimeoutMs`. An expired session reads as a fresh, empty one with the same id.
 *
 * Memory: a session idle for `PASSIVATE_AFTER_MS` is deactivated: parked if it has not expired,
 * dropped if it has.
 */

/** Default idle timeout of a session, as in most servlet containers: 30 minutes. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30 * 60_000;

/** How long a session actor stays active without a request before it is passivated. */
export const PASSIVATE_AFTER_MS = 5 * 60_000;

/** What the rule needs of a stored session: 0 means never written. */
export interface Expiring {
  expiresAt: number;
}

export function isExpired(record: Expiring, now: number): boolean {
  return record.expiresAt !== 0 && now >= record.expiresAt;
}

export function nextExpiry(now: number, idleTimeoutMs: number): number {
  return now + idleTimeoutMs;
}
