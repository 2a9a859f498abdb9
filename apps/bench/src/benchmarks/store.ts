/**
 * The store stack's write paths, each beside the raw write it is built on, measured side by side
 * in the same run (interleaved rounds, same machine conditions):
 *
 * - store.passivate.perSecond: sessions with 1 KiB of state passivated from memory into an
 *   LmdbTier the way a node's worker does it (`SessionStates`, as the actor system's parked-state
 *   store: the state encoded, the demotions of one tick written as one batch, each reported once
 *   flushed to disk), LMDB_BATCH per tick, against lmdb-js `put`s of the same 1 KiB values,
 *   LMDB_BATCH per transaction, also awaited until flushed. Target: ratio >= 0.5.
 * - store.shared.pg.perSecond: the same sessions demoted into a PostgresTier (its fenced
 *   multi-row upsert, 500 rows per statement), against multi-row INSERTs of the same rows into a
 *   table with the same columns and indexes, 500 rows per statement. Target: ratio >= 0.5.
 *
 * Every op writes fresh sessions (inserts, as passivation mostly does), figure and baseline alike
 * with ids from `scrambledId`: sessions passivate in the order they went idle, which has nothing
 * to do with the order of their ids, so ids arriving in key order (a counter) would flatter every
 * B-tree and hide the cost that matters. PostgreSQL is a private server started for the run (as
 * the store's tests do), with its default durable settings (fsync on), and stopped after.
 */
import { rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bucketOf, encode } from '@wadi/core';
import { SessionStates } from '@wadi/node';
import { LmdbTier, PostgresTier, StoreStack, type SessionRecord, type Tier } from '@wadi/store';
import { startPostgres } from '@wadi/store/testing';
import { open, type Database, type Key } from 'lmdb';
import pg from 'pg';
import { RAW_LMDB_BATCHED_PUT, RAW_PG_BATCHED_INSERT, lmdbBatchedPuts, pgBatchedInserts, scrambledId } from '../baselines.js';
import { measureAll, result, type BenchResult, type Benchmark, type Op, type Timing } from '../harness.js';

const STATE_BYTES = 1024;
const LMDB_BATCH = 1000;
const PG_BATCH = 500;
const BUCKETS = 1024;

/** Demotes `n` fresh sessions from memory into `to`, `batch` per call; every one must land. */
function passivate(stack: StoreStack, to: Tier, prefix: string, batch: number): Op {
  const state = new Uint8Array(STATE_BYTES).fill(0x5a);
  let serial = 0;
  return async (n) => {
    for (let done = 0; done < n; done += batch) {
      const records: SessionRecord[] = [];
      for (let i = Math.min(batch, n - done); i > 0; i--, serial++) {
        records.push({ type: 'cart', id: scrambledId(prefix, serial), bucket: serial % BUCKETS, version: 1, epoch: 1, state, updatedAt: Date.now() });
      }
      const results = await stack.demoteMany(records, null, to);
      const failed = results.find((r) => r.outcome !== 'demoted');
      if (failed !== undefined) throw new Error(`demotion into ${to.name} failed: ${failed.outcome} ${failed.error?.message ?? ''}`);
    }
  };
}

/** Passivates `n` fresh sessions through a worker's store stack, `batch` per tick; every one must land. */
function passivateThroughWorker(states: SessionStates, prefix: string, batch: number): Op {
  const payload = new Uint8Array(STATE_BYTES).fill(0x5a);
  let serial = 0;
  return async (n) => {
    for (let done = 0; done < n; done += batch) {
      for (let i = Math.min(batch, n - done); i > 0; i--, serial++) states.save('cart', scrambledId(prefix, serial), encode({ payload }));
      await states.flush();
    }
    if (states.stats().writing > 0) throw new Error(`${states.stats().writing} demotions did not land`);
  };
}

/** A sessions/s row beside its raw baseline; both targets are ratio >= 0.5. */
function row(name: string, timing: Record<'figure' | 'baseline', Timing>, baseline: string): BenchResult {
  return result({
    name,
    value: timing.figure.opsPerSec,
    unit: 'sessions/s',
    better: 'higher',
    baseline: { name: baseline, value: timing.baseline.opsPerSec },
    target: { on: 'ratio', op: '>=', threshold: 0.5 },
    samples: timing.figure.samples,
  });
}

async function passivateToLmdb(): Promise<BenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'wadi-bench-store-'));
  const disk = new LmdbTier({ path: join(dir, 'tier'), name: 'disk' });
  const env = open({ path: join(dir, 'raw') });
  const raw: Database<Buffer, Key> = env.openDB<Buffer, Key>({ name: 'raw', encoding: 'binary' });
  try {
    const states = new SessionStates({ disk, bucketOf: (id) => bucketOf(id, BUCKETS), versionOf: () => 1, epoch: () => 1, now: () => Date.now(), log: (message) => console.warn(message) });
    const timing = await measureAll(
      { figure: passivateThroughWorker(states, 'lmdb', LMDB_BATCH), baseline: lmdbBatchedPuts(raw, new Uint8Array(STATE_BYTES).fill(0x5a), LMDB_BATCH) },
      { warmupMs: 500, count: 10_000, rounds: 7 },
    );
    return row('store.passivate.perSecond', timing, RAW_LMDB_BATCHED_PUT);
  } finally {
    await disk.close();
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function demoteToPostgres(): Promise<BenchResult> {
  const server = await startPostgres();
  const pool = new pg.Pool({ connectionString: server.url, max: 2 });
  let shared: PostgresTier | undefined;
  try {
    shared = await PostgresTier.connect({ url: server.url, schema: 'bench', maxBatchRows: PG_BATCH });
    // The tier's table, without the tier: same columns, primary key and bucket index.
    await pool.query(
      'CREATE TABLE raw_sessions (type text NOT NULL, id text NOT NULL, bucket integer NOT NULL, version bigint NOT NULL, epoch bigint NOT NULL, ' +
        'state bytea NOT NULL, updated_at double precision NOT NULL, checksum integer NOT NULL, PRIMARY KEY (type, id))',
    );
    await pool.query('CREATE INDEX raw_sessions_by_bucket ON raw_sessions (bucket, type, id)');
    const stack = new StoreStack([shared]);
    const timing = await measureAll(
      { figure: passivate(stack, shared, 'pg', PG_BATCH * 2), baseline: pgBatchedInserts(pool, 'raw_sessions', new Uint8Array(STATE_BYTES).fill(0x5a), PG_BATCH) },
      { warmupMs: 500, count: 4_000, rounds: 7 },
    );
    return row('store.shared.pg.perSecond', timing, RAW_PG_BATCHED_INSERT);
  } finally {
    await shared?.close();
    await pool.end();
    await server.stop();
  }
}

export const storeWrites: Benchmark = {
  title: 'store writes',
  names: ['store.passivate.perSecond', 'store.shared.pg.perSecond'],
  async run() {
    return [await passivateToLmdb(), await demoteToPostgres()];
  },
};
