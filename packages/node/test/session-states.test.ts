/**
 * A worker's view of the store stack (`SessionStates`) under a real actor system, over the
 * store's in-memory tiers: demotion reported only once durable, promotion takes the record off the
 * disk, a restart finds what the disk holds, a shared copy is found for a session nobody hosts,
 * a full disk keeps sessions in memory, and a corrupt record fails only its own session's calls.
 */
import { describe, expect, it } from 'vitest';
import { ActorSystem, activationKey, bucketOf, defineActor, encode } from '@wadi/core';
import { IdleEvicter, MemoryStorage, MemoryTier, RateLimiter, StoreFull, type SessionRecord } from '@wadi/store';
import { FULL_RETRY_MS, SessionStates } from '../src/internal/session-states.js';

const BUCKETS = 64;
const Counter = defineActor('Counter', {
  state: () => ({ count: 0 }),
  handlers: {
    add(state, n: number) {
      state.count += n;
      return state.count;
    },
  },
});

/** A disk whose writes can be held back, or refused as full. */
class TestDisk extends MemoryTier {
  full = false;
  batches: number[] = [];
  held: Array<() => void> | undefined;
  override async store(record: SessionRecord): Promise<void> {
    if (this.full) throw new StoreFull(this.name, 'no space left on device');
    if (this.held !== undefined) await new Promise<void>((resolve) => this.held!.push(resolve));
    return super.store(record);
  }

  override async storeMany(records: readonly SessionRecord[]): Promise<Array<Error | undefined>> {
    this.batches.push(records.length);
    if (this.full) return records.map(() => new StoreFull(this.name, 'no space left on device'));
    if (this.held !== undefined) await new Promise<void>((resolve) => this.held!.push(resolve));
    return super.storeMany(records);
  }
}

function setup(options: { disk?: TestDisk; shared?: MemoryTier; versions?: Map<string, number>; promotionsPerSecond?: number; diskIdleMs?: number } = {}) {
  const disk = options.disk ?? new TestDisk({ name: 'disk' });
  const demoted: string[] = [];
  const left: string[] = [];
  const logs: string[] = [];
  const clock = { now: 1_000 };
  const states = new SessionStates({
    disk,
    bucketOf: (id) => bucketOf(id, BUCKETS),
    versionOf: (key) => options.versions?.get(key) ?? 1,
    epoch: () => 7,
    now: () => clock.now,
    onDemoted: (type, id) => demoted.push(`${type}/${id}`),
    onLeft: (type, id) => left.push(`${type}/${id}`),
    log: (message) => logs.push(message),
    ...(options.promotionsPerSecond === undefined ? {} : { promotions: new RateLimiter({ perSecond: options.promotionsPerSecond, burst: 1 }) }),
    ...(options.diskIdleMs === undefined ? {} : { diskEvicters: [new IdleEvicter({ idleMs: options.diskIdleMs })] }),
  });
  if (options.shared !== undefined) states.shared = options.shared;
  const system = new ActorSystem({ parkedStates: states });
  system.registry.add(Counter);
  return { disk, states, system, demoted, left, logs, clock };
}

/** Lives until `until` on the wall clock (0: for ever). */
const Lease = defineActor('Lease', {
  state: () => ({ until: 0, count: 0 }),
  expiresAt: (state) => (state.until === 0 ? undefined : state.until),
  handlers: {
    renew(state, until: number) {
      state.until = until;
      return ++state.count;
    },
  },
});

describe('SessionStates', () => {
  it('reports a demotion only once the disk holds it, and a call meanwhile gets the state back', async () => {
    const { disk, states, system, demoted } = setup();
    disk.held = [];
    const ref = system.ref(Counter, 'alice/counter');
    await ref.add(5);
    expect(system.deactivate('Counter', 'alice/counter')).toBe(true);
    await Promise.resolve();
    expect(demoted).toEqual([]);
    expect(states.stats()).toMatchObject({ disk: 0, writing: 1 });
    expect(system.hosts(activationKey('Counter', 'alice/counter'), 'Counter', 'alice/counter')).toBe(true);
    expect(await ref.add(1)).toBe(6); // taken back from the write in flight
    for (const release of disk.held.splice(0)) release();
    await states.flush();
    expect(demoted).toEqual([]); // promoted again before it was durable: not demoted
    expect(states.stats()).toMatchObject({ disk: 0, writing: 0 });
    expect(await disk.count()).toBe(1); // the last durable state stays, as the active session's shadow
  });

  it('demotes to disk and promotes back, the record staying as the last durable state until the session moves away', async () => {
    const { disk, states, system, demoted } = setup();
    const ref = system.ref(Counter, 'bob/counter');
    await ref.add(2);
    system.deactivate('Counter', 'bob/counter');
    await states.flush();
    expect(demoted).toEqual(['Counter/bob/counter']);
    expect(states.stats()).toMatchObject({ disk: 1, writing: 0, demoted: 1 });
    expect(disk.findSync('Counter', 'bob/counter')).toMatchObject({ version: 1, epoch: 7, bucket: bucketOf('bob/counter', BUCKETS) });
    expect(await ref.add(3)).toBe(5);
    expect(states.stats()).toMatchObject({ disk: 0, promoted: 1 });
    expect(disk.findSync('Counter', 'bob/counter')).toMatchObject({ version: 1 }); // its shadow: no write to promote
    // Demoted again: the new state replaces the shadow.
    system.deactivate('Counter', 'bob/counter');
    await states.flush();
    expect(states.stats()).toMatchObject({ disk: 1, demoted: 2 });
    expect(await ref.add(1)).toBe(6);
    // It migrates away: the shadow goes with it, so a restart here cannot claim an old copy.
    let paused = false;
    system.freeze('Counter', 'bob/counter', () => (paused = true));
    expect(paused).toBe(true);
    system.removeFrozen('Counter', 'bob/counter');
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(disk.findSync('Counter', 'bob/counter')).toBeUndefined();
  });

  it('writes the demotions of one turn of the event loop as one batch', async () => {
    const { disk, states, system } = setup();
    const ids = Array.from({ length: 50 }, (_, i) => `batch-${i}/counter`);
    await Promise.all(ids.map((id) => system.ref(Counter, id).add(1)));
    for (const id of ids) system.deactivate('Counter', id);
    await states.flush();
    expect(disk.batches).toEqual([50]);
    expect(states.stats()).toMatchObject({ disk: 50, demoted: 50 });
  });

  it('finds after a restart what the disk holds, at its stored version', async () => {
    const storage = new MemoryStorage();
    const first = setup({ disk: new TestDisk({ name: 'disk', storage }), versions: new Map([[activationKey('Counter', 'carol/counter'), 4]]) });
    await first.system.ref(Counter, 'carol/counter').add(9);
    first.system.deactivate('Counter', 'carol/counter');
    await first.states.flush();

    const second = setup({ disk: new TestDisk({ name: 'disk', storage }) });
    expect(await second.states.index(Array.from({ length: BUCKETS }, (_, bucket) => bucket))).toBe(1);
    expect([...second.states.keys()]).toEqual([['Counter', 'carol/counter']]);
    expect(second.states.parkedVersion('Counter', 'carol/counter')).toBe(4);
    expect(await second.system.ref(Counter, 'carol/counter').add(1)).toBe(10);
  });

  it('activates a session nobody hosts from the shared tier, and moves what is on disk there when asked', async () => {
    const shared = new MemoryTier({ name: 'shared' });
    await shared.store({ type: 'Counter', id: 'dave/counter', bucket: bucketOf('dave/counter', BUCKETS), version: 3, epoch: 1, state: encode({ count: 40 }), updatedAt: 0 });
    const { states, system } = setup({ shared });
    expect(await system.ref(Counter, 'dave/counter').add(2)).toBe(42);
    expect(states.stats()).toMatchObject({ fromShared: 1 });
    expect(await system.ref(Counter, 'erin/counter').add(1)).toBe(1); // nowhere: fresh

    for (const id of ['dave/counter', 'erin/counter']) system.deactivate('Counter', id);
    await states.flush();
    expect(await states.moveAllToShared()).toEqual({ moved: 2, kept: 0 });
    expect(states.stats()).toMatchObject({ disk: 0 });
    // The version never goes below what was loaded, so the shared tier accepts the newer state.
    expect(await shared.find('Counter', 'dave/counter')).toMatchObject({ version: 3 });
    expect((await shared.load('Counter', 'dave/counter'))?.state).toEqual(encode({ count: 42 }));
  });

  it('keeps sessions in memory while the disk is full, and demotes again once it has room', async () => {
    const { disk, states, system, logs, clock } = setup();
    disk.full = true;
    await system.ref(Counter, 'frank/counter').add(1);
    expect(system.deactivate('Counter', 'frank/counter')).toBe(true);
    await states.flush();
    expect(states.stats()).toMatchObject({ full: true, failedWrites: 1, disk: 0, writing: 1 });
    expect(logs.join('\n')).toContain("could not park Counter 'frank/counter'");
    await system.ref(Counter, 'grace/counter').add(1);
    expect(system.deactivate('Counter', 'grace/counter')).toBe(false); // not accepting: stays active
    disk.full = false;
    expect(system.deactivate('Counter', 'grace/counter')).toBe(false); // not tried again yet
    clock.now += FULL_RETRY_MS;
    expect(system.deactivate('Counter', 'grace/counter')).toBe(true); // the probe
    await states.flush();
    await states.flush(); // and the write the full disk refused, written again
    expect(states.stats()).toMatchObject({ full: false, disk: 2, writing: 0 });
    expect(await system.ref(Counter, 'frank/counter').add(1)).toBe(2); // nothing lost
  });

  it('fails the calls of a session whose record is corrupt, with an error naming it, and serves the others', async () => {
    const storage = new MemoryStorage();
    const { states, system } = setup({ disk: new TestDisk({ name: 'disk', storage }) });
    for (const id of ['bad/counter', 'good/counter']) {
      await system.ref(Counter, id).add(1);
      system.deactivate('Counter', id);
    }
    await states.flush();
    storage.replaceRaw('Counter', 'bad/counter', new Uint8Array([1, 2, 3]));
    const error = await system.ref(Counter, 'bad/counter').add(1).then(() => undefined, (failure: unknown) => failure);
    expect(error).toMatchObject({ code: 'WADI_CORRUPT_RECORD' });
    expect((error as Error).message).toContain('bad/counter');
    expect(await system.ref(Counter, 'good/counter').add(1)).toBe(2);
  });

  it('promotes over the rate limit later, in arrival order, without losing a call', async () => {
    const { states, system } = setup({ promotionsPerSecond: 200 });
    const ids = ['p1/counter', 'p2/counter', 'p3/counter', 'p4/counter'];
    for (const id of ids) {
      await system.ref(Counter, id).add(1);
      system.deactivate('Counter', id);
    }
    await states.flush();
    const order: string[] = [];
    const calls = ids.map((id) => system.ref(Counter, id).add(1).then((count) => order.push(id) && count));
    await Promise.resolve();
    expect(states.stats().promotionsWaiting).toBeGreaterThan(0);
    expect(await Promise.all(calls)).toEqual([2, 2, 2, 2]);
    expect(order).toEqual(ids);
    expect(states.stats()).toMatchObject({ promotionsWaiting: 0, promoted: 4, disk: 0 });
  });

  it("moves what the disk's evicters say is due on to the shared tier, and the bucket actor is told", async () => {
    const shared = new MemoryTier({ name: 'shared' });
    const { states, system, left, clock } = setup({ shared, diskIdleMs: 1000 });
    for (const id of ['old/counter', 'new/counter']) {
      await system.ref(Counter, id).add(7);
      system.deactivate('Counter', id);
      await states.flush();
      clock.now += 600;
    }
    await states.tick();
    expect(left).toEqual(['Counter/old/counter']);
    expect(states.stats()).toMatchObject({ disk: 1, toShared: 1 });
    expect(await shared.find('Counter', 'old/counter')).toMatchObject({ version: 1 });
    // Its next call finds it in the shared tier.
    expect(await system.ref(Counter, 'old/counter').add(1)).toBe(8);
    expect(states.stats()).toMatchObject({ fromShared: 1 });
  });

  describe('expiry', () => {
    function expiringSetup(disk = new TestDisk({ name: 'disk' }), promotionsPerSecond?: number) {
      const wall = { now: 5_000_000 };
      const expired: string[] = [];
      const base = setup({ disk, ...(promotionsPerSecond === undefined ? {} : { promotionsPerSecond }) });
      const system = new ActorSystem({ parkedStates: base.states, wallClock: () => wall.now, onExpired: (type, id) => expired.push(`${type}/${id}`) });
      system.registry.add(Lease);
      return { ...base, system, wall, expired };
    }

    it('parks a session with its expiry, keeps it on disk until then, and then takes it off the disk', async () => {
      const { disk, states, system, wall, expired } = expiringSetup();
      await system.ref(Lease, 'exp-a/lease').renew(6_000_000);
      await system.ref(Lease, 'keep-a/lease').renew(0);
      system.deactivate('Lease', 'exp-a/lease');
      system.deactivate('Lease', 'keep-a/lease');
      await states.flush();
      expect(disk.findSync('Lease', 'exp-a/lease')).toMatchObject({ expiresAt: 6_000_000 });
      expect(disk.findSync('Lease', 'keep-a/lease')).not.toHaveProperty('expiresAt');
      expect(system.dropExpired(100)).toBe(0);
      wall.now = 6_000_000;
      expect(system.dropExpired(100)).toBe(1);
      expect(expired).toEqual(['Lease/exp-a/lease']);
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(disk.findSync('Lease', 'exp-a/lease')).toBeUndefined();
      expect(states.stats()).toMatchObject({ disk: 1 });
      expect(system.stats()).toMatchObject({ expired: 1 });
      // Its next call starts it fresh; the other one kept its state.
      expect(await system.ref(Lease, 'exp-a/lease').renew(0)).toBe(1);
      expect(await system.ref(Lease, 'keep-a/lease').renew(0)).toBe(2);
    });

    it('does not drop a session whose activation waits for the promotion rate', async () => {
      const { states, system, wall, expired } = expiringSetup(undefined, 5);
      for (const id of ['exp-q1/lease', 'exp-q2/lease']) {
        await system.ref(Lease, id).renew(5_050_000);
        system.deactivate('Lease', id);
      }
      await states.flush();
      wall.now = 5_050_000;
      // The first takes the one promotion the rate has now; the second waits in the queue.
      const first = system.ref(Lease, 'exp-q1/lease').renew(0);
      const second = system.ref(Lease, 'exp-q2/lease').renew(0);
      expect(system.dropExpired(100)).toBe(0);
      expect(expired).toEqual([]);
      expect(await first).toBe(2);
      expect(await second).toBe(2);
    });

    it('knows the expiry of what the disk holds after a restart', async () => {
      const storage = new MemoryStorage();
      const first = expiringSetup(new TestDisk({ name: 'disk', storage }));
      await first.system.ref(Lease, 'exp-b/lease').renew(5_500_000);
      first.system.deactivate('Lease', 'exp-b/lease');
      await first.states.flush();

      const second = expiringSetup(new TestDisk({ name: 'disk', storage }));
      expect(await second.states.index(Array.from({ length: BUCKETS }, (_, bucket) => bucket))).toBe(1);
      expect(second.system.dropExpired(100)).toBe(0);
      second.wall.now = 5_500_001;
      expect(second.system.dropExpired(100)).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(await second.disk.count()).toBe(0);
    });

    it('a session promoted and renewed is not dropped at its old expiry', async () => {
      const { states, system, wall } = expiringSetup();
      const ref = system.ref(Lease, 'exp-c/lease');
      await ref.renew(5_100_000);
      system.deactivate('Lease', 'exp-c/lease');
      await states.flush();
      expect(await ref.renew(9_000_000)).toBe(2);
      system.deactivate('Lease', 'exp-c/lease');
      await states.flush();
      wall.now = 5_100_000;
      expect(system.dropExpired(100)).toBe(0);
      expect(await ref.renew(0)).toBe(3);
    });

    it("removes a bucket's expired sessions from the shared tier, and only those", async () => {
      const shared = new MemoryTier({ name: 'shared' });
      const { states } = setup({ shared });
      const bucket = bucketOf('x-1/lease', BUCKETS);
      const ids = Array.from({ length: 2000 }, (_, i) => `x-${i}/lease`).filter((id) => bucketOf(id, BUCKETS) === bucket);
      const other = Array.from({ length: 200 }, (_, i) => `y-${i}/lease`).find((id) => bucketOf(id, BUCKETS) !== bucket)!;
      const write = (id: string, expiresAt?: number) =>
        shared.store({ type: 'Lease', id, bucket: bucketOf(id, BUCKETS), version: 3, epoch: 2, state: encode({ until: expiresAt ?? 0, count: 1 }), updatedAt: 1, ...(expiresAt === undefined ? {} : { expiresAt }) });
      await write(ids[0]!, 100);
      await write(ids[1]!, 200);
      await write(ids[2]!);
      await write(other, 100);
      expect(await states.sweepShared(bucket, 150, 10)).toBe(1);
      expect(await shared.find('Lease', ids[0]!)).toBeUndefined();
      expect(await shared.find('Lease', ids[1]!)).toBeDefined();
      expect(await states.sweepShared(bucket, 1e15, 10)).toBe(1);
      expect(await shared.find('Lease', ids[2]!)).toBeDefined(); // never expires
      expect(await shared.find('Lease', other)).toBeDefined(); // another bucket
      expect(states.stats()).toMatchObject({ expiredFromShared: 2 });
    });

    it('a session found expired when it goes idle takes its shadow off the disk', async () => {
      const { disk, states, system, wall, expired } = expiringSetup();
      const ref = system.ref(Lease, 'exp-d/lease');
      await ref.renew(5_200_000);
      system.deactivate('Lease', 'exp-d/lease');
      await states.flush();
      expect(await ref.renew(5_300_000)).toBe(2); // promoted: its record stays as the shadow
      expect(disk.findSync('Lease', 'exp-d/lease')).toBeDefined();
      wall.now = 5_300_000;
      expect(system.deactivate('Lease', 'exp-d/lease')).toBe(true);
      expect(expired).toEqual(['Lease/exp-d/lease']);
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(disk.findSync('Lease', 'exp-d/lease')).toBeUndefined();
      expect(states.stats()).toMatchObject({ disk: 0, writing: 0 });
    });
  });
});
