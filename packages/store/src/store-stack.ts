/**
 * StoreStack: a node's tiers below memory, ordered from the top (local disk, then shared), and
 * the moves between them. It keeps no timers and starts nothing: the node's tick asks its
 * evicters what is due, takes tokens from a `RateLimiter`, and calls `demoteMany`.
 *
 * - A demotion is a durable write to the lower tier, then a fenced remove from the upper one
 *   (fenced by the version and epoch that was written: if the upper copy changed meanwhile, it
 *   stays). A crash in between leaves the session in both tiers, never in neither; the copies
 *   are equal, and `findHighest` picks the newest copy wherever it is.
 * - A tier that reports `StoreFull` is marked full: demotions into it stop (answer 'full' without
 *   writing) until a write to it through the stack succeeds again. The caller probes now and
 *   then with `{ probe: true }` to find out when there is room.
 */
import { CorruptRecord, StaleWrite, StoreFull } from './errors.js';
import type { SessionMeta, SessionRecord, Tier } from './tier.js';

export type DemoteOutcome =
  /** Written below and removed above (or it was not above: `from` null or already gone). */
  | 'demoted'
  /** The lower tier already held a newer copy, or the upper copy changed meanwhile: nothing to do. */
  | 'superseded'
  /** The lower tier refused the writer's epoch (a fence): this node no longer owns the session. */
  | 'refused'
  /** The lower tier is full: nothing was written, the upper copy stays. */
  | 'full'
  /** Any other failure (the error says which); the upper copy stays. */
  | 'failed';

export interface DemoteResult {
  outcome: DemoteOutcome;
  /** Whether the copy in `from` was removed. */
  removed: boolean;
  error?: Error;
}

export interface StackTierStats {
  name: string;
  count: number;
  quarantined: number;
  full: boolean;
}

export interface StackStats {
  tiers: StackTierStats[];
  /** Some tier is full. */
  full: boolean;
}

export interface Located {
  tier: Tier;
  meta: SessionMeta;
}

export class StoreStack {
  readonly tiers: readonly Tier[];
  readonly #full = new Set<Tier>();

  /** `tiers` from the top of the stack down (e.g. [disk, shared]). */
  constructor(tiers: readonly Tier[]) {
    this.tiers = [...tiers];
  }

  /** Some tier reported StoreFull and no write to it has succeeded since. */
  get full(): boolean {
    return this.#full.size > 0;
  }

  isFull(tier: Tier): boolean {
    return this.#full.has(tier);
  }

  /** `tier.storeMany`, noting whether the tier is full. */
  async storeMany(tier: Tier, records: readonly SessionRecord[]): Promise<Array<Error | undefined>> {
    const outcomes = await tier.storeMany(records);
    this.#note(tier, outcomes);
    return outcomes;
  }

  /** `tier.store`, noting whether the tier is full. */
  async store(tier: Tier, record: SessionRecord): Promise<void> {
    const [outcome] = await this.storeMany(tier, [record]);
    if (outcome !== undefined) throw outcome;
  }

  /** Demotes one record from `from` (null: from memory, nothing to remove) to `to`. */
  async demote(record: SessionRecord, from: Tier | null, to: Tier, options: { probe?: boolean } = {}): Promise<DemoteResult> {
    const [result] = await this.demoteMany([record], from, to, options);
    return result!;
  }

  /**
   * Demotes records in one batch: one `storeMany` into `to`, then the fenced removes from
   * `from`. With `to` full, nothing is attempted unless `probe` is set.
   */
  async demoteMany(records: readonly SessionRecord[], from: Tier | null, to: Tier, options: { probe?: boolean } = {}): Promise<DemoteResult[]> {
    if (this.#full.has(to) && options.probe !== true) {
      return records.map(() => ({ outcome: 'full', removed: false, error: new StoreFull(to.name, 'marked full by an earlier write; not attempted') }));
    }
    const written = await this.storeMany(to, records);
    return Promise.all(records.map((record, i) => this.#finishDemotion(record, written[i], from)));
  }

  /** One record's demotion after the write below: classify, and remove the upper copy if it is done with. */
  async #finishDemotion(record: SessionRecord, error: Error | undefined, from: Tier | null): Promise<DemoteResult> {
    if (error instanceof StoreFull) return { outcome: 'full', removed: false, error };
    if (error instanceof StaleWrite && error.reason === 'fence') return { outcome: 'refused', removed: false, error };
    if (error !== undefined && !(error instanceof StaleWrite)) return { outcome: 'failed', removed: false, error };
    // Written, or the lower tier already holds a newer copy: either way the upper copy has
    // served its purpose, unless it changed since `record` was taken from it.
    const removed = from === null ? false : await this.#removeFrom(from, record);
    if (removed instanceof StaleWrite) return { outcome: 'superseded', removed: false, error: removed };
    if (removed instanceof Error) return { outcome: 'failed', removed: false, error: removed };
    return error === undefined ? { outcome: 'demoted', removed } : { outcome: 'superseded', removed, error };
  }

  /**
   * The newest copy of a session across the tiers (highest version, then epoch; on a tie the
   * upper tier), or undefined. Every tier is asked, because an upper tier can hold an older
   * copy than a lower one (a demotion interrupted before its remove, then the session moved on).
   * A tier whose copy is corrupt has quarantined it and counts as not holding it.
   */
  async findHighest(type: string, id: string): Promise<Located | undefined> {
    const found = await Promise.all(
      this.tiers.map((tier) =>
        tier.find(type, id).catch((error: unknown) => {
          if (error instanceof CorruptRecord) return undefined;
          throw error;
        }),
      ),
    );
    let best: Located | undefined;
    found.forEach((meta, i) => {
      if (meta === undefined) return;
      if (best === undefined || meta.version > best.meta.version || (meta.version === best.meta.version && meta.epoch > best.meta.epoch)) {
        best = { tier: this.tiers[i]!, meta };
      }
    });
    return best;
  }

  async stats(): Promise<StackStats> {
    const tiers = await Promise.all(
      this.tiers.map(async (tier) => {
        let quarantined = 0;
        for await (const _ of tier.quarantined()) quarantined++;
        return { name: tier.name, count: await tier.count(), quarantined, full: this.#full.has(tier) };
      }),
    );
    return { tiers, full: this.full };
  }

  /** true / false from the remove, or the error it rejected with. */
  async #removeFrom(from: Tier, record: SessionRecord): Promise<boolean | Error> {
    try {
      return await from.remove(record.type, record.id, { version: record.version, epoch: record.epoch });
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  }

  #note(tier: Tier, outcomes: ReadonlyArray<Error | undefined>): void {
    if (outcomes.some((outcome) => outcome instanceof StoreFull)) this.#full.add(tier);
    else if (outcomes.some((outcome) => outcome === undefined)) this.#full.delete(tier);
  }
}
