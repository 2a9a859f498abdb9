/**
 * The application's own evicters (`StoreOptions.evicters`): a module loaded in every worker whose
 * evicters act beside the built-in ones, and the clear errors when the module is unusable.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startNode, type WadiNode } from '@wadi/node';
import { ACTORS, waitFor } from './helpers.js';
import { Counter } from './fixtures/actors.mjs';

const EVICTERS = new URL('./fixtures/evicters.mjs', import.meta.url);
const DISK_EVICTERS = new URL('./fixtures/disk-evicters.mjs', import.meta.url);

const dirs: string[] = [];
let node: WadiNode | undefined;

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'wadi-evicters-'));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  await node?.stop();
  node = undefined;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('evicter modules', () => {
  it("demote the sessions the application's evicter names, and only those; their state comes back on the next call", async () => {
    node = await startNode({ actors: [ACTORS], workers: 1, store: { disk: tempDir(), evicters: EVICTERS } });
    expect(await node.ref(Counter, 'scratch-1').add(5)).toBe(5);
    expect(await node.ref(Counter, 'keep-1').add(7)).toBe(7);
    const current = node;
    await waitFor('the scratch session to leave memory', async () => (await current.stats()).workers[0]!.activations === 1);
    expect((await current.stats()).workers[0]!.deactivated).toBe(1);
    expect(await node.ref(Counter, 'scratch-1').add(1)).toBe(6);
    expect(await node.ref(Counter, 'keep-1').add(1)).toBe(8);
  });

  it('refuse a module that exports no evicters, naming it', async () => {
    await expect(startNode({ actors: [ACTORS], workers: 1, store: { disk: tempDir(), evicters: ACTORS } })).rejects.toThrow(/evicter module .*actors\.mjs exports neither `memory` nor `disk`/);
  });

  it('refuse disk evicters on a node without a shared tier', async () => {
    await expect(startNode({ actors: [ACTORS], workers: 1, store: { disk: tempDir(), evicters: DISK_EVICTERS } })).rejects.toThrow(/has disk evicters.*give store.shared/);
  });

  it('refuse an evicter module that cannot be loaded', async () => {
    await expect(startNode({ actors: [ACTORS], workers: 1, store: { disk: tempDir(), evicters: new URL('./fixtures/missing.mjs', import.meta.url) } })).rejects.toThrow(/cannot load evicter module/);
  });
});
