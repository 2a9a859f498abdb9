/**
 * The behavioural suite every tier must pass (Hono-style: `tierSuite(name, makeHarness)` defines
 * the tests; each tier's test file calls it with a harness for that tier). It holds MemoryTier,
 * LmdbTier and PostgresTier to the one contract in src/tier.ts.
 */
import { decode, encode } from '@wadi/core';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CorruptRecord, StaleWrite, type SessionMeta, type SessionRecord, type Tier } from '../src/index.js';

export interface TierHarness {
  /** Opens a tier over the harness's data; every call opens another handle on the same data. */
  open(): Promise<Tier>;
  /** Damages the stored state bytes of a session behind the tier's back. */
  corrupt(type: string, id: string): Promise<void>;
  /** Records survive closing every handle and opening again. */
  readonly durable: boolean;
  /** Property runs (fast-check) for the racing-writers property. */
  readonly propertyRuns: number;
  /** Deletes the data (temporary directory, schema). */
  dispose(): Promise<void>;
}

let serial = 0;

export function record(overrides: Partial<SessionRecord> & { id?: string } = {}): SessionRecord {
  const id = overrides.id ?? `s-${serial++}`;
  return {
    type: 'cart',
    id,
    bucket: 1,
    version: 1,
    epoch: 1,
    state: encode({ id, items: [1, 2, 3] }),
    updatedAt: 1_700_000_000_000,
    ...overrides,
  };
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function refusal(promise: Promise<unknown>): Promise<StaleWrite> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StaleWrite);
  return error as StaleWrite;
}

export function tierSuite(name: string, makeHarness: () => Promise<TierHarness>): void {
  describe(`tier contract: ${name}`, () => {
    let harness: TierHarness;
    let tier: Tier;
    const extra: Tier[] = [];

    beforeEach(async () => {
      harness = await makeHarness();
      tier = await harness.open();
    });

    afterEach(async () => {
      await Promise.all([tier, ...extra.splice(0)].map((t) => t.close()));
      await harness.dispose();
    });

    async function another(): Promise<Tier> {
      const t = await harness.open();
      extra.push(t);
      return t;
    }

    it('round-trips a record and its metadata; absent sessions read as undefined', async () => {
      const r = record({ type: 'profile', id: 'alice/profile', bucket: 17, version: 4, epoch: 2, updatedAt: 1234.5 });
      await tier.store(r);
      const loaded = await tier.load('profile', 'alice/profile');
      expect(loaded).toEqual({ ...r, state: new Uint8Array(r.state) });
      expect(decode(loaded!.state)).toEqual({ id: 'alice/profile', items: [1, 2, 3] });
      expect(await tier.find('profile', 'alice/profile')).toEqual({
        type: 'profile',
        id: 'alice/profile',
        bucket: 17,
        version: 4,
        epoch: 2,
        updatedAt: 1234.5,
        bytes: r.state.byteLength,
      });
      expect(await tier.load('profile', 'bob/profile')).toBeUndefined();
      expect(await tier.find('cart', 'alice/profile')).toBeUndefined();
      expect(await tier.count()).toBe(1);
      expect(tier.durability.length).toBeGreaterThan(0);
    });

    it('keeps an expiry with the record, in its metadata and listings, and replaces or drops it with the next write', async () => {
      await tier.store(record({ type: 'cart', id: 'exp/cart', bucket: 3, version: 1, expiresAt: 1_700_000_600_000.5 }));
      expect((await tier.load('cart', 'exp/cart'))?.expiresAt).toBe(1_700_000_600_000.5);
      expect((await tier.find('cart', 'exp/cart'))?.expiresAt).toBe(1_700_000_600_000.5);
      const listed: SessionMeta[] = [];
      for await (const meta of tier.listBucket(3)) listed.push(meta);
      expect(listed.map((meta) => meta.expiresAt)).toEqual([1_700_000_600_000.5]);
      await tier.store(record({ type: 'cart', id: 'exp/cart', bucket: 3, version: 2, expiresAt: 1_700_000_900_000 }));
      expect((await tier.find('cart', 'exp/cart'))?.expiresAt).toBe(1_700_000_900_000);
      await tier.store(record({ type: 'cart', id: 'exp/cart', bucket: 3, version: 3 }));
      expect(await tier.find('cart', 'exp/cart')).not.toHaveProperty('expiresAt');
      expect(await tier.load('cart', 'exp/cart')).not.toHaveProperty('expiresAt');
      await expect(tier.store(record({ expiresAt: Number.NaN }))).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT' });
    });

    it('a remove with expiredBy takes only a copy expired by then, whatever its version', async () => {
      await tier.store(record({ id: 'sweep/a', version: 4, epoch: 2, expiresAt: 100 }));
      await tier.store(record({ id: 'sweep/b', version: 4, epoch: 2, expiresAt: 100 }));
      await tier.store(record({ id: 'sweep/c', version: 4, epoch: 2 }));
      // Renewed under the same version and epoch (the same placement): a later expiry.
      await tier.store(record({ id: 'sweep/b', version: 4, epoch: 2, expiresAt: 300 }));
      expect(await tier.remove('cart', 'sweep/a', { version: 4, epoch: 2, expiredBy: 150 })).toBe(true);
      await expect(tier.remove('cart', 'sweep/b', { version: 4, epoch: 2, expiredBy: 150 })).rejects.toMatchObject({ code: 'WADI_STALE_WRITE', reason: 'renewed' });
      await expect(tier.remove('cart', 'sweep/c', { version: 4, epoch: 2, expiredBy: 150 })).rejects.toMatchObject({ reason: 'renewed' });
      expect(await tier.find('cart', 'sweep/b')).toMatchObject({ expiresAt: 300 });
      expect(await tier.find('cart', 'sweep/c')).toBeDefined();
      await expect(tier.remove('cart', 'sweep/c', { version: 4, epoch: 2, expiredBy: Number.NaN })).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT' });
    });

    it('keeps its own copy of the state', async () => {
      const r = record({ state: new Uint8Array([1, 2, 3]) });
      await tier.store(r);
      r.state[0] = 99;
      const loaded = await tier.load(r.type, r.id);
      expect([...loaded!.state]).toEqual([1, 2, 3]);
      loaded!.state[1] = 99;
      expect([...(await tier.load(r.type, r.id))!.state]).toEqual([1, 2, 3]);
    });

    it('stores empty and large states, and ids of any script and length', async () => {
      const long = 'ü'.repeat(1024);
      const records = [
        record({ id: 'empty', state: new Uint8Array(0) }),
        record({ id: 'large', state: new Uint8Array(3 * 1024 * 1024).fill(7) }),
        record({ id: long, bucket: 3 }),
        record({ id: 'ŝesio/日本語', bucket: 3 }),
      ];
      for (const r of records) await tier.store(r);
      for (const r of records) {
        // Compared as buffers: a deep equality walk over 3 MiB takes seconds.
        expect(Buffer.from((await tier.load(r.type, r.id))!.state).equals(r.state)).toBe(true);
      }
      const ids = (await collect(tier.listBucket(3))).map((m) => m.id).sort();
      expect(ids).toEqual([long, 'ŝesio/日本語'].sort());
    });

    it('refuses a write below the stored version, and changes nothing', async () => {
      await tier.store(record({ id: 'v', version: 5, state: new Uint8Array([5]) }));
      const error = await refusal(tier.store(record({ id: 'v', version: 4, state: new Uint8Array([4]) })));
      expect(error).toMatchObject({ code: 'WADI_STALE_WRITE', type: 'cart', id: 'v', version: 4, storedVersion: 5, reason: 'version' });
      expect(error.message).toContain('cart/v');
      expect([...(await tier.load('cart', 'v'))!.state]).toEqual([5]);
    });

    it('accepts an equal version again (an idempotent retry) and higher versions', async () => {
      const r = record({ id: 'retry', version: 3 });
      await tier.store(r);
      await tier.store(r);
      expect((await tier.load('cart', 'retry'))!.version).toBe(3);
      await tier.store({ ...r, version: 9, state: new Uint8Array([9]) });
      expect(await tier.load('cart', 'retry')).toMatchObject({ version: 9, state: new Uint8Array([9]) });
    });

    it('refuses a write whose epoch is below the bucket fence; the fence only rises', async () => {
      await tier.fence(1, 5);
      const error = await refusal(tier.store(record({ id: 'f', epoch: 4 })));
      expect(error).toMatchObject({ reason: 'fence', fence: 5, epoch: 4, storedVersion: null });
      await tier.store(record({ id: 'f', epoch: 5 }));
      await tier.fence(1, 3);
      await refusal(tier.store(record({ id: 'g', epoch: 4 })));
      // Other buckets are not fenced.
      await tier.store(record({ id: 'h', bucket: 2, epoch: 0 }));
      expect(await tier.count()).toBe(2);
    });

    it('refuses a write from an epoch older than the one that wrote the stored copy', async () => {
      await tier.store(record({ id: 'e', version: 1, epoch: 3 }));
      const error = await refusal(tier.store(record({ id: 'e', version: 2, epoch: 2 })));
      expect(error).toMatchObject({ reason: 'epoch', storedEpoch: 3, epoch: 2 });
      await tier.store(record({ id: 'e', version: 2, epoch: 3 }));
    });

    it('fences removes: below the fence or below the stored copy a remove is refused', async () => {
      await tier.store(record({ id: 'r', version: 5, epoch: 1 }));
      await tier.fence(1, 2);
      expect(await refusal(tier.remove('cart', 'r', { version: 5, epoch: 1 }))).toMatchObject({ reason: 'fence', fence: 2 });
      expect(await refusal(tier.remove('cart', 'r', { version: 4, epoch: 2 }))).toMatchObject({ reason: 'version', storedVersion: 5 });
      expect(await tier.load('cart', 'r')).toBeDefined();
      expect(await tier.remove('cart', 'r', { version: 5, epoch: 2 })).toBe(true);
      expect(await tier.load('cart', 'r')).toBeUndefined();
      expect(await tier.remove('cart', 'r', { version: 5, epoch: 2 })).toBe(false);
      expect(await tier.count()).toBe(0);
    });

    it('refuses a remove from an older epoch than the stored copy', async () => {
      await tier.store(record({ id: 'x', version: 1, epoch: 4 }));
      expect(await refusal(tier.remove('cart', 'x', { version: 9, epoch: 3 }))).toMatchObject({ reason: 'epoch', storedEpoch: 4 });
    });

    it('lists a bucket across pages, and only that bucket', async () => {
      const inBucket = Array.from({ length: 1100 }, (_, i) => record({ id: `b7-${i}`, bucket: 7, version: i }));
      const elsewhere = [record({ id: 'b8', bucket: 8 }), record({ id: 'b6', bucket: 6 })];
      expect(await tier.storeMany([...inBucket, ...elsewhere])).toEqual(new Array(1102).fill(undefined));
      const listed = await collect(tier.listBucket(7));
      expect(listed).toHaveLength(1100);
      expect(new Set(listed.map((m) => m.id))).toEqual(new Set(inBucket.map((r) => r.id)));
      const sample = listed.find((m) => m.id === 'b7-42')!;
      expect(sample).toEqual({ type: 'cart', id: 'b7-42', bucket: 7, version: 42, epoch: 1, updatedAt: 1_700_000_000_000, bytes: inBucket[42]!.state.byteLength });
      await tier.remove('cart', 'b7-42', { version: 42, epoch: 1 });
      expect(await collect(tier.listBucket(7))).toHaveLength(1099);
      expect(await collect(tier.listBucket(9))).toEqual([]);
    });

    it('a session removed and stored again at once stays listed once; a refused new session is never listed', async () => {
      await tier.store(record({ id: 'again', bucket: 11, version: 1 }));
      await Promise.all([tier.remove('cart', 'again', { version: 1, epoch: 1 }), tier.store(record({ id: 'again', bucket: 11, version: 2 }))]);
      const stored = await tier.load('cart', 'again');
      const listed = (await collect(tier.listBucket(11))).map((m) => m.id);
      expect(listed).toEqual(stored === undefined ? [] : ['again']);
      await tier.fence(12, 5);
      await refusal(tier.store(record({ id: 'never', bucket: 12, epoch: 4 })));
      expect(await collect(tier.listBucket(12))).toEqual([]);
    });

    it('a record stored again under another bucket is listed only there', async () => {
      await tier.store(record({ id: 'mover', bucket: 13, version: 1 }));
      await tier.store(record({ id: 'mover', bucket: 14, version: 2 }));
      expect(await collect(tier.listBucket(13))).toEqual([]);
      expect((await collect(tier.listBucket(14))).map((m) => [m.id, m.bucket, m.version])).toEqual([['mover', 14, 2]]);
    });

    it('a corrupt record rejects with CorruptRecord, is quarantined, and nothing else is affected', async () => {
      const good = record({ id: 'good', bucket: 5 });
      const bad = record({ id: 'bad', bucket: 5 });
      await tier.storeMany([good, bad]);
      await harness.corrupt('cart', 'bad');
      const error = await tier.load('cart', 'bad').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(CorruptRecord);
      expect(error).toMatchObject({ code: 'WADI_CORRUPT_RECORD', type: 'cart', id: 'bad', tier: tier.name });
      expect((error as Error).message).toContain('cart/bad');
      const quarantined = await collect(tier.quarantined());
      expect(quarantined).toHaveLength(1);
      expect(quarantined[0]).toMatchObject({ type: 'cart', id: 'bad' });
      expect(quarantined[0]!.reason.length).toBeGreaterThan(0);
      expect(quarantined[0]!.bytes).toBe(quarantined[0]!.raw.byteLength);
      expect(quarantined[0]!.bytes).toBeGreaterThan(0);
      // Moved aside: the session reads as absent, the others as before.
      expect(await tier.load('cart', 'bad')).toBeUndefined();
      expect(await tier.load('cart', 'good')).toEqual({ ...good, state: new Uint8Array(good.state) });
      expect((await collect(tier.listBucket(5))).map((m) => m.id)).toEqual(['good']);
      expect(await tier.count()).toBe(1);
      await tier.store({ ...bad, version: 2 });
      expect((await tier.load('cart', 'bad'))!.version).toBe(2);
      expect(await collect(tier.quarantined())).toHaveLength(1);
    });

    it('a newer write replaces a corrupt record that nobody read yet', async () => {
      await tier.store(record({ id: 'rot', version: 1 }));
      await harness.corrupt('cart', 'rot');
      await tier.store(record({ id: 'rot', version: 2, state: new Uint8Array([2]) }));
      expect(await tier.load('cart', 'rot')).toMatchObject({ version: 2, state: new Uint8Array([2]) });
    });

    it('storeMany reports each record: stored, stale, fenced, invalid; a repeated key applies in order', async () => {
      await tier.store(record({ id: 'old', version: 5 }));
      await tier.fence(3, 9);
      const batch = [
        record({ id: 'new-1' }),
        record({ id: 'old', version: 4 }),
        record({ id: 'fenced', bucket: 3, epoch: 8 }),
        { ...record({ id: 'invalid' }), version: -1 },
        record({ id: 'twice', version: 1, state: new Uint8Array([1]) }),
        record({ id: 'twice', version: 2, state: new Uint8Array([2]) }),
        record({ id: 'back', version: 2 }),
        record({ id: 'back', version: 1 }),
        record({ id: 'new-2', bucket: 3, epoch: 9 }),
      ];
      const outcomes = await tier.storeMany(batch);
      expect(outcomes.map((o) => (o === undefined ? 'ok' : (o as { code?: string }).code))).toEqual([
        'ok',
        'WADI_STALE_WRITE',
        'WADI_STALE_WRITE',
        'WADI_INVALID_ARGUMENT',
        'ok',
        'ok',
        'ok',
        'WADI_STALE_WRITE',
      'ok',
      ]);
      expect(outcomes[1]).toMatchObject({ reason: 'version', storedVersion: 5 });
      expect(outcomes[2]).toMatchObject({ reason: 'fence', fence: 9 });
      expect(await tier.load('cart', 'twice')).toMatchObject({ version: 2, state: new Uint8Array([2]) });
      expect((await tier.load('cart', 'back'))!.version).toBe(2);
      expect((await tier.load('cart', 'old'))!.version).toBe(5);
      expect(await tier.load('cart', 'invalid')).toBeUndefined();
      expect(await tier.storeMany([])).toEqual([]);
    });

    it('refuses invalid records and keys with InvalidArgument before any I/O', async () => {
      await expect(tier.store({ ...record(), bucket: 1.5 })).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT' });
      await expect(tier.store({ ...record(), id: '' })).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT' });
      await expect(tier.store({ ...record(), state: 'text' as unknown as Uint8Array })).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT' });
      await expect(tier.remove('cart', 'x', { version: Number.NaN, epoch: 0 })).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT' });
      await expect(tier.fence(-1, 1)).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT' });
    });

    it('another handle on the same data sees writes and fences at once', async () => {
      const other = await another();
      await tier.store(record({ id: 'shared', version: 2 }));
      expect((await other.load('cart', 'shared'))!.version).toBe(2);
      await other.fence(1, 4);
      await refusal(tier.store(record({ id: 'shared', version: 3, epoch: 3 })));
      await refusal(other.store(record({ id: 'shared', version: 1, epoch: 4 })));
    });

    it('keeps records, fences and quarantine across close and reopen when durable', async () => {
      await tier.store(record({ id: 'kept', version: 7, epoch: 2, bucket: 4 }));
      await tier.store(record({ id: 'rotten', bucket: 4 }));
      await tier.fence(4, 3);
      await harness.corrupt('cart', 'rotten');
      await expect(tier.load('cart', 'rotten')).rejects.toBeInstanceOf(CorruptRecord);
      await tier.close();
      tier = await harness.open();
      if (!harness.durable) return;
      expect(await tier.load('cart', 'kept')).toMatchObject({ version: 7, epoch: 2, bucket: 4 });
      await refusal(tier.store(record({ id: 'kept', version: 8, epoch: 2, bucket: 4 })));
      expect((await collect(tier.quarantined())).map((q) => q.id)).toEqual(['rotten']);
      expect(await tier.count()).toBe(1);
    });

    it('rejects calls after close with Stopped', async () => {
      await tier.close();
      await expect(tier.load('cart', 'x')).rejects.toMatchObject({ code: 'WADI_STOPPED' });
      await expect(tier.store(record())).rejects.toMatchObject({ code: 'WADI_STOPPED' });
      tier = await harness.open();
    });

    it('racing fenced writers: the stored record is the highest accepted one; no refused write is visible', async () => {
      const other = await another();
      const handles = [tier, other];
      let run = 0;
      const op = fc.oneof(
        fc.record({ kind: fc.constant('write' as const), version: fc.nat(4), epoch: fc.nat(3), via: fc.nat(1), wave: fc.nat(2) }),
        fc.record({ kind: fc.constant('fence' as const), epoch: fc.nat(3), via: fc.nat(1), wave: fc.nat(2) }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
          const bucket = 1000 + run;
          const id = `race-${run++}`;
          // Waves: ops of one wave start together (one lmdb-js transaction, concurrent statements);
          // a wave starts before the previous one has finished.
          const results: Array<Promise<PromiseSettledResult<unknown>>> = [];
          for (let wave = 0; wave <= 2; wave++) {
            ops.forEach((o, i) => {
              if (o.wave !== wave) return;
              const via = handles[o.via]!;
              const started =
                o.kind === 'fence'
                  ? via.fence(bucket, o.epoch)
                  : via.store({ type: 'race', id, bucket, version: o.version, epoch: o.epoch, state: new Uint8Array([i]), updatedAt: i });
              // Settled at once: a refusal must not count as unhandled while later waves start.
              results[i] = started.then(
                (value) => ({ status: 'fulfilled', value }),
                (reason: unknown) => ({ status: 'rejected', reason }),
              );
            });
            await new Promise((resolve) => setImmediate(resolve));
          }
          const settled = await Promise.all(results);
          const accepted: Array<{ i: number; version: number; epoch: number }> = [];
          const refused: Array<{ version: number; epoch: number }> = [];
          const fences: number[] = [];
          ops.forEach((o, i) => {
            const outcome = settled[i]!;
            if (o.kind === 'fence') {
              expect(outcome.status).toBe('fulfilled');
              fences.push(o.epoch);
            } else if (outcome.status === 'fulfilled') accepted.push({ i, version: o.version, epoch: o.epoch });
            else {
              expect(outcome.reason).toBeInstanceOf(StaleWrite);
              refused.push(o);
            }
          });
          const stored = await tier.load('race', id);
          if (accepted.length === 0) {
            expect(stored).toBeUndefined();
            return;
          }
          // Accepted writes form a chain (each was >= what was stored), so sorted by version they
          // are also sorted by epoch, and the last of them is what is stored.
          accepted.sort((a, b) => a.version - b.version || a.epoch - b.epoch);
          for (let k = 1; k < accepted.length; k++) expect(accepted[k]!.epoch).toBeGreaterThanOrEqual(accepted[k - 1]!.epoch);
          const top = accepted[accepted.length - 1]!;
          expect(stored).toMatchObject({ version: top.version, epoch: top.epoch });
          const winners = accepted.filter((a) => a.version === top.version && a.epoch === top.epoch).map((a) => a.i);
          expect(winners).toContain(stored!.state[0]);
          // Each refusal had a reason: a newer accepted write or a higher fence.
          for (const w of refused) {
            const newer = accepted.some((a) => a.version > w.version || a.epoch > w.epoch) || fences.some((f) => f > w.epoch);
            expect(newer).toBe(true);
          }
        }),
        { numRuns: harness.propertyRuns },
      );
    });
  });
}
