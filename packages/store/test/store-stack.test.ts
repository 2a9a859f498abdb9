/** StoreStack over memory tiers (and a tier that fills up): demotion, findHighest, full, stats. */
import { describe, expect, it } from 'vitest';
import { MemoryTier, StoreFull, StoreStack, type SessionRecord, type Tier } from '../src/index.js';
import { record } from './tier-suite.js';

/** A MemoryTier that reports StoreFull while `full` is set, as a full disk would. */
class FillableTier extends MemoryTier {
  full = false;
  override async storeMany(records: readonly SessionRecord[]): Promise<Array<Error | undefined>> {
    if (this.full) return records.map(() => new StoreFull(this.name, 'no space left on device'));
    return super.storeMany(records);
  }
}

function stack(): { disk: MemoryTier; shared: FillableTier; stack: StoreStack } {
  const disk = new MemoryTier({ name: 'disk' });
  const shared = new FillableTier({ name: 'shared' });
  return { disk, shared, stack: new StoreStack([disk, shared]) };
}

describe('StoreStack', () => {
  it('demotes: durable write below, then a fenced remove above', async () => {
    const { disk, shared, stack: s } = stack();
    const r = record({ id: 'a', version: 3 });
    await disk.store(r);
    expect(await s.demote(r, disk, shared)).toEqual({ outcome: 'demoted', removed: true });
    expect(await disk.load('cart', 'a')).toBeUndefined();
    expect((await shared.load('cart', 'a'))!.version).toBe(3);
  });

  it('passivates from memory in batches (from = null: nothing to remove)', async () => {
    const { disk, stack: s } = stack();
    const records = Array.from({ length: 5 }, (_, i) => record({ id: `m${i}` }));
    const results = await s.demoteMany(records, null, disk);
    expect(results.map((r) => r.outcome)).toEqual(new Array(5).fill('demoted'));
    expect(await disk.count()).toBe(5);
  });

  it('leaves the upper copy when it changed after the record was taken from it', async () => {
    const { disk, shared, stack: s } = stack();
    const taken = record({ id: 'b', version: 1 });
    await disk.store(taken);
    await disk.store({ ...taken, version: 2 });
    const result = await s.demote(taken, disk, shared);
    expect(result).toMatchObject({ outcome: 'superseded', removed: false });
    expect((await disk.load('cart', 'b'))!.version).toBe(2);
  });

  it('a lower tier that holds a newer copy supersedes the demotion; the older upper copy goes', async () => {
    const { disk, shared, stack: s } = stack();
    await shared.store(record({ id: 'c', version: 9 }));
    const old = record({ id: 'c', version: 4 });
    await disk.store(old);
    expect(await s.demote(old, disk, shared)).toMatchObject({ outcome: 'superseded', removed: true });
    expect(await disk.load('cart', 'c')).toBeUndefined();
  });

  it('a fenced lower tier refuses the demotion and the upper copy stays', async () => {
    const { disk, shared, stack: s } = stack();
    await shared.fence(1, 5);
    const r = record({ id: 'd', epoch: 4 });
    await disk.store(r);
    expect(await s.demote(r, disk, shared)).toMatchObject({ outcome: 'refused', removed: false });
    expect(await disk.load('cart', 'd')).toBeDefined();
  });

  it('stops demoting into a full tier until a write to it succeeds', async () => {
    const { disk, shared, stack: s } = stack();
    const r = record({ id: 'e' });
    await disk.store(r);
    shared.full = true;
    expect(await s.demote(r, disk, shared)).toMatchObject({ outcome: 'full', removed: false });
    expect(s.full).toBe(true);
    expect(s.isFull(shared)).toBe(true);
    expect(s.isFull(disk)).toBe(false);
    shared.full = false;
    // Not attempted while marked full...
    expect((await s.demote(r, disk, shared)).outcome).toBe('full');
    expect(await shared.count()).toBe(0);
    // ...until a probe (or any write through the stack) succeeds.
    expect((await s.demote(r, disk, shared, { probe: true })).outcome).toBe('demoted');
    expect(s.full).toBe(false);
    expect(await disk.count()).toBe(0);
  });

  it('findHighest returns the newest copy across tiers, the upper one on a tie', async () => {
    const { disk, shared, stack: s } = stack();
    expect(await s.findHighest('cart', 'f')).toBeUndefined();
    await shared.store(record({ id: 'f', version: 7 }));
    await disk.store(record({ id: 'f', version: 5 }));
    expect(await s.findHighest('cart', 'f')).toMatchObject({ tier: shared, meta: { version: 7 } });
    await disk.store(record({ id: 'f', version: 7 }));
    expect((await s.findHighest('cart', 'f'))!.tier).toBe(disk);
    await disk.store(record({ id: 'f', version: 7, epoch: 2 }));
    expect((await s.findHighest('cart', 'f'))!.meta.epoch).toBe(2);
  });

  it('findHighest skips a copy that turned out corrupt', async () => {
    const { disk, shared, stack: s } = stack();
    await disk.store(record({ id: 'g', version: 8 }));
    await shared.store(record({ id: 'g', version: 6 }));
    const raw = disk.storage.rawRecord('cart', 'g')!;
    disk.storage.replaceRaw('cart', 'g', raw.subarray(0, raw.length - 1));
    expect(await s.findHighest('cart', 'g')).toMatchObject({ tier: shared, meta: { version: 6 } });
  });

  it('reports counts, quarantine and fullness per tier', async () => {
    const { disk, shared, stack: s } = stack();
    await disk.storeMany([record({ id: 'h1' }), record({ id: 'h2' })]);
    const raw = disk.storage.rawRecord('cart', 'h2')!;
    disk.storage.replaceRaw('cart', 'h2', new Uint8Array(raw.length));
    await disk.load('cart', 'h2').catch(() => undefined);
    shared.full = true;
    await s.storeMany(shared, [record({ id: 'h3' })]);
    expect(await s.stats()).toEqual({
      tiers: [
        { name: 'disk', count: 1, quarantined: 1, full: false },
        { name: 'shared', count: 0, quarantined: 0, full: true },
      ],
      full: true,
    });
  });

  it('keeps the tiers in the order given', () => {
    const tiers: Tier[] = [new MemoryTier({ name: 'one' }), new MemoryTier({ name: 'two' })];
    expect(new StoreStack(tiers).tiers.map((t) => t.name)).toEqual(['one', 'two']);
  });
});
