/**
 * LmdbTier beyond the shared suite: synchronous reads, worker threads and processes sharing one
 * environment (the local-disk tier is opened by every worker of a node; the shared tier by every
 * node on a host), a full disk, keys longer than LMDB allows, and a map that has to grow.
 * Fixtures run the built package (dist/), as a worker or another process would.
 */
import { execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { CorruptRecord, LmdbTier, type SessionRecord } from '../src/index.js';
import { rewriteLmdbRecord, tempDir } from './harnesses.js';
import { record } from './tier-suite.js';

const run = promisify(execFile);
const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

describe('LmdbTier', () => {
  const dirs: string[] = [];
  const tiers: LmdbTier[] = [];

  function openTier(path = newDir()): LmdbTier {
    const tier = new LmdbTier({ path });
    tiers.push(tier);
    return tier;
  }

  function newDir(): string {
    const dir = tempDir('wadi-lmdb-');
    dirs.push(dir);
    return dir;
  }

  afterEach(async () => {
    await Promise.all(tiers.splice(0).map((tier) => tier.close()));
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('reads synchronously: loadSync and findSync see a write as soon as store resolves', async () => {
    const tier = openTier();
    expect(tier.loadSync('cart', 'a')).toBeUndefined();
    await tier.store(record({ id: 'a', version: 2, state: new Uint8Array([1, 2]) }));
    expect(tier.loadSync('cart', 'a')).toMatchObject({ version: 2, state: new Uint8Array([1, 2]) });
    expect(tier.findSync('cart', 'a')).toMatchObject({ version: 2, bytes: 2 });
  });

  it('loadSync of a corrupt record throws CorruptRecord at once and quarantines it', async () => {
    const path = newDir();
    const tier = openTier(path);
    await tier.store(record({ id: 'bad' }));
    await rewriteLmdbRecord(path, 'cart', 'bad', () => new TextEncoder().encode('not a record'));
    expect(() => tier.loadSync('cart', 'bad')).toThrow(CorruptRecord);
    const quarantined: string[] = [];
    for await (const entry of tier.quarantined()) quarantined.push(new TextDecoder().decode(entry.raw));
    expect(quarantined).toEqual(['not a record']);
    expect(tier.loadSync('cart', 'bad')).toBeUndefined();
  });

  it('is shared with a worker thread of the same process', async () => {
    const path = newDir();
    const tier = openTier(path);
    await tier.store(record({ id: 'from-main', version: 5, state: new Uint8Array([7]) }));
    const worker = new Worker(fixture('lmdb-worker.mjs'), { workerData: { path } });
    const report = await new Promise<{ seen: unknown; refused: unknown }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await new Promise((resolve) => worker.once('exit', resolve));
    expect(report.seen).toEqual({ version: 5, state: [7] });
    expect(report.refused).toEqual({ code: 'WADI_STALE_WRITE', name: 'StaleWrite', storedVersion: 5 });
    expect(tier.loadSync('cart', 'from-worker')).toMatchObject({ version: 3, state: new Uint8Array([42]) });
  });

  it('a read in a later callback sees another thread\'s commit, though this thread read before it in the same event-loop turn', async () => {
    const path = newDir();
    const tier = openTier(path);
    const flags = new Int32Array(new SharedArrayBuffer(8));
    const worker = new Worker(fixture('lmdb-commit-worker.mjs'), { workerData: { path, flags: flags.buffer } });
    try {
      // Node hands a port's queued messages to their handlers in one event-loop callback: this
      // thread blocks in the first handler until the worker committed and posted the second, so
      // nothing else runs between this thread's read before the commit and its read after.
      const seen = await new Promise<{ before: SessionRecord | undefined; after: SessionRecord | undefined }>((resolve, reject) => {
        let before: SessionRecord | undefined;
        worker.on('message', (message: string) => {
          if (message === 'ready') {
            before = tier.loadSync('cart', 'from-worker');
            Atomics.store(flags, 0, 1);
            Atomics.notify(flags, 0);
            if (Atomics.wait(flags, 1, 0, 10_000) === 'timed-out') reject(new Error('the worker never committed'));
          } else resolve({ before, after: tier.loadSync('cart', 'from-worker') });
        });
        worker.once('error', reject);
      });
      expect(seen.before).toBeUndefined();
      expect(seen.after).toMatchObject({ version: 3, state: new Uint8Array([42]) });
    } finally {
      await new Promise((resolve) => worker.once('exit', resolve));
    }
  });

  it('is shared by processes writing at the same time: no version regresses, nothing is lost', async () => {
    const path = newDir();
    const versions = 40;
    const sessions = 10;
    const children = ['p1', 'p2'].map((name) => run(process.execPath, [fixture('lmdb-writer.mjs'), path, name, String(versions), String(sessions)], { timeout: 120_000 }));
    const reports = (await Promise.all(children)).map(({ stdout }) => JSON.parse(stdout.trim()) as { stored: number; refused: number; other: string[] });
    for (const report of reports) expect(report.other).toEqual([]);
    // Each process's own sessions are all stored; each version of a shared session is stored
    // by at least one of them (an equal version is an accepted retry).
    expect(reports[0]!.stored + reports[1]!.stored).toBeGreaterThanOrEqual(2 * versions * sessions + versions * sessions);
    const tier = openTier(path);
    for (let s = 0; s < sessions; s++) {
      const stored = tier.loadSync('cart', `shared-${s}`)!;
      expect(stored.version).toBe(versions);
      expect(new TextDecoder().decode(stored.state)).toMatch(new RegExp(`^p[12]:${versions}$`));
    }
    expect(await tier.count()).toBe(sessions + 2 * versions * sessions);
  });

  it('a fence raised by one process refuses older epochs in another', async () => {
    const path = newDir();
    const tier = openTier(path);
    await tier.fence(9, 6);
    const { stdout } = await run(process.execPath, [fixture('lmdb-fenced.mjs'), path, '9', '5'], { timeout: 60_000 });
    expect(JSON.parse(stdout.trim())).toEqual({ code: 'WADI_STALE_WRITE', reason: 'fence', fence: 6 });
    const { stdout: allowed } = await run(process.execPath, [fixture('lmdb-fenced.mjs'), path, '9', '6'], { timeout: 60_000 });
    expect(JSON.parse(allowed.trim())).toBe('stored');
  });

  it('a full disk rejects writes with StoreFull; nothing acknowledged is lost; writes resume when there is room', async () => {
    const path = newDir();
    // ulimit -f (1 KiB blocks): the data file cannot grow past 3 MiB, as on a full disk.
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn('bash', ['-c', 'ulimit -f 3072 && exec "$0" "$1" "$2"', process.execPath, fixture('lmdb-disk-full.mjs'), path], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`exit ${code}: ${stderr}`))));
    });
    const report = JSON.parse(output.trim()) as {
      full: { code: string; name: string; tier: string } | null;
      acknowledged: string[];
      failed: number;
      unreadable: string[];
      visibleFailed: string[];
      afterRoom: string;
      count: number;
    };
    expect(report.full).toMatchObject({ code: 'WADI_STORE_FULL', name: 'StoreFull', tier: 'disk' });
    expect(report.failed).toBeGreaterThan(0);
    expect(report.unreadable).toEqual([]);
    expect(report.visibleFailed).toEqual([]);
    expect(report.afterRoom).toBe('stored');
    // Reopened without the limit: exactly what was acknowledged (and not removed) is there.
    const tier = openTier(path);
    expect(await tier.count()).toBe(report.acknowledged.length);
    for (const id of report.acknowledged) expect(tier.loadSync('cart', id)?.state.length).toBe(4096);
  });

  it('a fence raised in the same transaction as writes of new sessions refuses them all', async () => {
    // lmdb-js 3.5: an "absent" condition nested in a failed block re-enabled what followed it;
    // the tier keeps such conditions at the top level. Same event turn = same transaction.
    const tier = openTier();
    const fresh = Array.from({ length: 5 }, (_, i) => record({ id: `new-${i}`, bucket: 3, epoch: 1 }));
    const [fenced, outcomes] = await Promise.all([tier.fence(3, 2), tier.storeMany(fresh)]);
    expect(fenced).toBeUndefined();
    expect(outcomes.map((o) => (o as { reason?: string } | undefined)?.reason)).toEqual(new Array(5).fill('fence'));
    for (const r of fresh) expect(tier.loadSync('cart', r.id)).toBeUndefined();
  });

  it('keeps ids too long for an LMDB key, under their hash, and lists them by their id', async () => {
    const tier = openTier();
    const long = 'x'.repeat(1024);
    const longer = `${'日'.repeat(1023)}z`;
    await tier.storeMany([record({ id: long, bucket: 3 }), record({ id: longer, bucket: 3, version: 4 })]);
    expect(tier.loadSync('cart', long)!.id).toBe(long);
    expect(tier.loadSync('cart', longer)!.version).toBe(4);
    const ids: string[] = [];
    for await (const meta of tier.listBucket(3)) ids.push(meta.id);
    expect(ids.sort()).toEqual([long, longer].sort());
    expect(await tier.remove('cart', longer, { version: 4, epoch: 1 })).toBe(true);
  });

  it('grows past the initial map size', async () => {
    const tier = new LmdbTier({ path: newDir(), mapSize: 64 * 1024 });
    tiers.push(tier);
    const big = Array.from({ length: 200 }, (_, i) => record({ id: `g${i}`, state: new Uint8Array(8192).fill(i) }));
    expect((await tier.storeMany(big)).every((o) => o === undefined)).toBe(true);
    expect(tier.loadSync('cart', 'g199')!.state[0]).toBe(199);
  });

});
