/**
 * store.activate.perSecond: sessions (1 KiB of state) promoted from a node's disk tier (LMDB) to
 * memory, each answering a call, per second, in one worker's actor system; against the raw floor
 * of lmdb `get` plus msgpackr decode of the same values. Issue #6 target: ratio >= 0.3.
 *
 * Each round first parks every session on disk again (untimed), then times calls to all of them,
 * a window of calls in flight at a time, as a burst of users coming back would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ActorSystem, bucketOf, defineActor } from '@wadi/core';
import { SessionStates } from '@wadi/node';
import { LmdbTier } from '@wadi/store';
import { open } from 'lmdb';
import { pack, unpack } from 'msgpackr';
import { median, result, type Benchmark } from '../harness.js';

const SESSIONS = 20_000;
const ROUNDS = 9;
const WINDOW = 256;
const BUCKETS = 1024;
export const RAW_LMDB_GET = 'raw.lmdb.getDecode';

const Stored = defineActor('Stored', {
  state: () => ({ payload: new Uint8Array(1024), calls: 0 }),
  handlers: {
    touch(state) {
      state.calls++;
      return state.calls;
    },
  },
});

const ids = Array.from({ length: SESSIONS }, (_, i) => `user-${i}/stored`);

async function parkAll(system: ActorSystem, states: SessionStates): Promise<void> {
  for (const id of ids) system.deactivate('Stored', id);
  await states.flush();
}

async function callAll(system: ActorSystem): Promise<number> {
  let next = 0;
  let answered = 0;
  const lane = async (): Promise<void> => {
    while (next < ids.length) {
      const id = ids[next++]!;
      // Awaited first: `answered += await ...` would read `answered` before the await and lose the other lanes' counts.
      const calls = await system.ref(Stored, id).touch();
      if (calls > 0) answered++;
    }
  };
  await Promise.all(Array.from({ length: WINDOW }, lane));
  return answered;
}

export const storeActivate: Benchmark = {
  title: 'store activate',
  names: ['store.activate.perSecond'],
  async run() {
    const dir = mkdtempSync(join(tmpdir(), 'wadi-bench-activate-'));
    const disk = new LmdbTier({ path: join(dir, 'tier'), name: 'disk' });
    const states = new SessionStates({
      disk,
      bucketOf: (id) => bucketOf(id, BUCKETS),
      versionOf: () => 1,
      epoch: () => 1,
      now: () => Date.now(),
      log: (message) => console.warn(message),
    });
    const system = new ActorSystem({ parkedStates: states });
    system.registry.add(Stored);
    const raw = open({ path: join(dir, 'raw'), encoding: 'binary' });
    try {
      await callAll(system);
      const payload = new Uint8Array(1024);
      for (let i = 0; i < SESSIONS; i++) void raw.put(ids[i]!, pack({ payload, calls: 1 }));
      await raw.flushed;
      const figure: number[] = [];
      const baseline: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        await parkAll(system, states);
        let start = performance.now();
        const answered = await callAll(system);
        figure.push((answered * 1000) / (performance.now() - start));
        start = performance.now();
        let decoded = 0;
        for (const id of ids) {
          const value = unpack(raw.get(id) as Buffer) as { calls: number };
          decoded += value.calls > 0 ? 1 : 0;
        }
        baseline.push((decoded * 1000) / (performance.now() - start));
      }
      return [
        result({
          name: 'store.activate.perSecond',
          value: median(figure),
          unit: 'sessions/s',
          better: 'higher',
          baseline: { name: RAW_LMDB_GET, value: median(baseline) },
          target: { on: 'ratio', op: '>=', threshold: 0.3 },
          samples: figure,
        }),
      ];
    } finally {
      system.stop();
      await states.close();
      await raw.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
