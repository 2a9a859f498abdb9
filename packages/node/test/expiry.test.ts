/**
 * Expiry on a real node: a session whose type's `expiresAt` passed is dropped from wherever the
 * node keeps it (memory, or the disk tier after a demotion), counted in `/status`, and starts
 * fresh on its next call, while a session that has not expired keeps its state.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LmdbTier } from '@wadi/store';
import { startNode, type WadiNode } from '@wadi/node';
import { ACTORS, waitFor } from './helpers.js';
import { Expiring } from './fixtures/actors.mjs';

const dirs: string[] = [];
let node: WadiNode | undefined;

afterEach(async () => {
  await node?.stop();
  node = undefined;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'wadi-expiry-'));
  dirs.push(dir);
  return dir;
}

async function expiredCount(current: WadiNode): Promise<number> {
  return (await current.stats()).workers.reduce((sum, worker) => sum + worker.expired, 0);
}

describe('expiry on a node', () => {
  it('drops expired sessions parked in memory; the others keep their state', async () => {
    node = await startNode({ actors: [ACTORS], workers: 1 });
    const current = node;
    const soon = Date.now() + 2_500;
    for (let i = 0; i < 20; i++) await current.ref(Expiring, `mem-soon-${i}`).keepUntil(soon);
    await current.ref(Expiring, 'mem-forever').keepUntil(0);
    // Idle after 50 ms (looked for every second): parked, not expired yet; dropped by the sweep once expired.
    await waitFor('the sessions to be parked', async () => (await current.stats()).workers[0]!.parked === 21);
    await waitFor('the expired sessions to be dropped', async () => (await expiredCount(current)) === 20);
    expect((await current.stats()).workers[0]!.parked).toBe(1);
    expect(await current.ref(Expiring, 'mem-soon-3').keepUntil(0)).toBe(1);
    expect(await current.ref(Expiring, 'mem-forever').keepUntil(0)).toBe(2);
  });

  it('drops a session already expired when it goes idle, without parking it', async () => {
    node = await startNode({ actors: [ACTORS], workers: 1 });
    const current = node;
    await current.ref(Expiring, 'past').keepUntil(Date.now() - 1);
    await waitFor('the session to be dropped', async () => (await expiredCount(current)) === 1);
    expect((await current.stats()).workers[0]!).toMatchObject({ activations: 0, parked: 0 });
  });

  it('takes expired sessions off the disk tier', async () => {
    const disk = tempDir();
    node = await startNode({ actors: [ACTORS], workers: 1, store: { disk, idleMs: 50 } });
    const current = node;
    const soon = Date.now() + 2_500;
    for (let i = 0; i < 10; i++) await current.ref(Expiring, `disk-soon-${i}`).keepUntil(soon);
    await current.ref(Expiring, 'disk-forever').keepUntil(0);
    // With a disk tier, `parked` counts what the disk holds.
    await waitFor('the sessions to reach the disk', async () => (await current.stats()).workers[0]!.parked === 11);
    await waitFor('the expired sessions to be dropped', async () => (await expiredCount(current)) === 10);
    await node.stop();
    node = undefined;
    const tier = new LmdbTier({ path: disk, name: 'disk' });
    try {
      expect(await tier.count()).toBe(1);
      expect(await tier.find('Expiring', 'disk-forever')).toBeDefined();
    } finally {
      await tier.close();
    }
  });
});
