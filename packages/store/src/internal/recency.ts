/**
 * Keys in the order they were last touched (oldest first), with the time and size of their last
 * touch: the structure every evicter walks. A JavaScript Map iterates in insertion order, so
 * re-inserting a key on each touch keeps the order in O(1) and the oldest keys are read first.
 */

export interface Touch {
  at: number;
  bytes: number;
}

export class Recency {
  readonly #entries = new Map<string, Touch>();
  #bytes = 0;
  #latest = -Infinity;

  /**
   * Records a touch. Times are kept non-decreasing in key order: a touch stamped earlier than
   * one already recorded (a clock that stepped back) counts as happening at that later time, so
   * a key is never judged older than it is.
   */
  touch(key: string, bytes: number, now: number): void {
    const at = Math.max(now, this.#latest);
    this.#latest = at;
    this.remove(key);
    this.#entries.set(key, { at, bytes });
    this.#bytes += bytes;
  }

  remove(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
  }

  get(key: string): Touch | undefined {
    return this.#entries.get(key);
  }

  get size(): number {
    return this.#entries.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Oldest first. */
  entries(): IterableIterator<[string, Touch]> {
    return this.#entries.entries();
  }

  /** Up to `limit` keys, oldest first, while `admit` accepts them (the first refusal ends it). */
  takeOldest(limit: number, admit: (touch: Touch) => boolean): string[] {
    const out: string[] = [];
    for (const [key, touch] of this.#entries) {
      if (out.length >= limit || !admit(touch)) break;
      out.push(key);
    }
    return out;
  }
}
