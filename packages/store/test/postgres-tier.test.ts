/**
 * PostgresTier beyond the shared suite: the races its single statements are built to win (a
 * fence raised while a write or remove is waiting on it), batches larger than one statement,
 * concurrent schema creation, statement timeouts, and how disk-full errors are reported.
 */
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { PostgresTier, StaleWrite, StoreFull } from '../src/index.js';
import { storageErrorSync } from '../src/internal/storage-errors.js';
import { record } from './tier-suite.js';

let schemas = 0;

describe('PostgresTier', () => {
  const url = inject('pgUrl');
  let schema: string;
  let admin: pg.Client;
  const tiers: PostgresTier[] = [];

  async function connect(options: { maxBatchRows?: number; statementTimeoutMs?: number } = {}): Promise<PostgresTier> {
    const tier = await PostgresTier.connect({ url, schema, poolSize: 2, ...options });
    tiers.push(tier);
    return tier;
  }

  beforeEach(async () => {
    schema = `pg${process.pid}_${schemas++}`;
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
  });

  afterEach(async () => {
    await Promise.all(tiers.splice(0).map((tier) => tier.close()));
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  });

  /** Runs `body` while another transaction holds bucket `bucket`'s fence row raised to `epoch`, then commits it. */
  async function whileFenceRaising(bucket: number, epoch: number, body: () => Promise<void>): Promise<void> {
    await admin.query('BEGIN');
    await admin.query(`UPDATE "${schema}".fences SET epoch = $2 WHERE bucket = $1`, [bucket, epoch]);
    await body();
    await admin.query('COMMIT');
  }

  it('a write that waits on a fence being raised is judged against the new fence', async () => {
    const tier = await connect();
    await tier.store(record({ id: 'seed', bucket: 40, epoch: 1 }));
    let write!: Promise<unknown>;
    await whileFenceRaising(40, 5, async () => {
      write = tier.store(record({ id: 'late', bucket: 40, epoch: 3 })).catch((error: unknown) => error);
      // Give the statement time to reach the locked fence row (it must wait there).
      await waitForLockWaiters(admin, schema);
    });
    expect(await write).toBeInstanceOf(StaleWrite);
    expect(await write).toMatchObject({ reason: 'fence', fence: 5 });
    expect(await tier.load('cart', 'late')).toBeUndefined();
  });

  it('a remove that waits on a fence being raised is judged against the new fence', async () => {
    const tier = await connect();
    await tier.store(record({ id: 'victim', bucket: 41, epoch: 2 }));
    let removal!: Promise<unknown>;
    await whileFenceRaising(41, 7, async () => {
      removal = tier.remove('cart', 'victim', { version: 1, epoch: 2 }).catch((error: unknown) => error);
      await waitForLockWaiters(admin, schema);
    });
    expect(await removal).toMatchObject({ code: 'WADI_STALE_WRITE', reason: 'fence', fence: 7 });
    expect(await tier.load('cart', 'victim')).toBeDefined();
  });

  it('two nodes racing upserts on the same sessions never regress a version', async () => {
    const [a, b] = [await connect(), await connect()];
    const ids = Array.from({ length: 20 }, (_, i) => `hot-${i}`);
    const writes: Array<Promise<Array<Error | undefined>>> = [];
    for (let version = 1; version <= 30; version++) {
      // Each node writes every session at each version, in opposite key orders.
      writes.push(a.storeMany(ids.map((id) => record({ id, version, bucket: 42 }))));
      writes.push(b.storeMany([...ids].reverse().map((id) => record({ id, version, bucket: 42 }))));
    }
    for (const outcomes of await Promise.all(writes)) {
      for (const outcome of outcomes) if (outcome !== undefined) expect(outcome).toBeInstanceOf(StaleWrite);
    }
    for (const id of ids) expect((await a.load('cart', id))!.version).toBe(30);
  });

  it('splits a batch into statements of maxBatchRows and reports every record', async () => {
    const tier = await connect({ maxBatchRows: 7 });
    await tier.store(record({ id: 'n-13', version: 9 }));
    const batch = Array.from({ length: 50 }, (_, i) => record({ id: `n-${i}`, version: 1 }));
    const outcomes = await tier.storeMany(batch);
    expect(outcomes.filter((o) => o === undefined)).toHaveLength(49);
    expect(outcomes[13]).toBeInstanceOf(StaleWrite);
    expect(await tier.count()).toBe(50);
  });

  it('creates the schema once when several nodes connect at the same time', async () => {
    const all = await Promise.all([connect(), connect(), connect()]);
    await all[0]!.store(record({ id: 'one' }));
    expect(await all[2]!.count()).toBe(1);
  });

  it('fails a statement that passes statementTimeoutMs, and keeps working after', async () => {
    const tier = await connect({ statementTimeoutMs: 300 });
    await tier.store(record({ id: 'held', bucket: 43 }));
    await admin.query('BEGIN');
    await admin.query(`SELECT * FROM "${schema}".fences WHERE bucket = 43 FOR UPDATE`);
    const outcome = await tier.store(record({ id: 'held', bucket: 43, version: 2 })).catch((error: unknown) => error);
    await admin.query('ROLLBACK');
    expect((outcome as Error).message).toMatch(/statement timeout/);
    await tier.store(record({ id: 'held', bucket: 43, version: 2 }));
    expect((await tier.load('cart', 'held'))!.version).toBe(2);
  });

  it('refuses a schema name that is not a plain identifier', async () => {
    await expect(PostgresTier.connect({ url, schema: 'x"; DROP TABLE y; --' })).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT' });
  });

  it('reports disk_full (SQLSTATE 53100) as StoreFull', () => {
    const diskFull = Object.assign(new Error('could not extend file "base/5/16384": No space left on device'), { code: '53100' });
    expect(storageErrorSync(diskFull, 'postgres')).toBeInstanceOf(StoreFull);
    const other = Object.assign(new Error('syntax error'), { code: '42601' });
    expect(storageErrorSync(other, 'postgres')).toBe(other);
  });
});

/** Waits until a statement on `schema` waits on a lock (the statement under test reached the fence row). */
async function waitForLockWaiters(admin: pg.Client, schema: string): Promise<void> {
  for (;;) {
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0`,
      [`"${schema}"`],
    );
    if (rows[0]!.n >= 1) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
