/**
 * Which of many keys have expired, found a slice at a time: each call looks at no more than a
 * given number of keys, going on from where the previous call stopped, so a sweep over a
 * hundred thousand parked sessions costs every tick the same small amount instead of one long
 * stall. A key expires at most one full pass after its time (the caller's rule decides what
 * "expired" means for a read; this only decides when the bytes go).
 */
export class ExpirySweep<K> {
  readonly #at = new Map<K, number>();
  #cursor: Iterator<[K, number]> | undefined;

  /** Sets (or, with undefined, clears) when `key` expires. */
  set(key: K, expiresAt: number | undefined): void {
    if (expiresAt === undefined) this.#at.delete(key);
    else this.#at.set(key, expiresAt);
  }

  delete(key: K): void {
    this.#at.delete(key);
  }

  get(key: K): number | undefined {
    return this.#at.get(key);
  }

  get size(): number {
    return this.#at.size;
  }

  /**
   * Removes and returns the keys expired at `now` among the next `limit` looked at (fewer when
   * there are fewer keys: a call never looks at a key twice).
   */
  due(now: number, limit: number): K[] {
    const expired: K[] = [];
    const budget = Math.min(limit, this.#at.size);
    for (let looked = 0; looked < budget; looked++) {
      let next = this.#cursor?.next();
      if (next === undefined || next.done === true) {
        // A new pass. Map iterators see deletions (and keys added since), so nothing is skipped.
        this.#cursor = this.#at.entries();
        next = this.#cursor.next();
        if (next.done === true) break;
      }
      const [key, at] = next.value;
      if (at <= now) {
        this.#at.delete(key);
        expired.push(key);
      }
    }
    return expired;
  }
}
