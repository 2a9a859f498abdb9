/**
 * Harnesses that open each tier over fresh data for the behavioural suite, and damage stored
 * bytes behind its back (the way a disk or a hand edit would).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import pg from 'pg';
import { inject } from 'vitest';
import { LmdbTier, MemoryStorage, MemoryTier, PostgresTier } from '../src/index.js';
import { recordKey } from '../src/internal/lmdb-keys.js';
import type { TierHarness } from './tier-suite.js';

/** Flips one bit in the middle of `bytes` (the state, for a record of a few dozen bytes). */
function flipped(bytes: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(bytes);
  const at = Math.floor(copy.length / 2);
  copy[at] = copy[at]! ^ 0x10;
  return copy;
}

export async function memoryHarness(): Promise<TierHarness> {
  const storage = new MemoryStorage();
  return {
    open: async () => new MemoryTier({ storage }),
    corrupt: async (type, id) => storage.replaceRaw(type, id, flipped(storage.rawRecord(type, id)!)),
    durable: false,
    propertyRuns: 300,
    dispose: async () => undefined,
  };
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Rewrites a record's stored bytes through a second handle on the environment (as another process could). */
export async function rewriteLmdbRecord(path: string, type: string, id: string, rewrite: (bytes: Uint8Array) => Uint8Array): Promise<void> {
  const env = open({ path, maxDbs: 8 });
  try {
    const records = env.openDB<Buffer, ReturnType<typeof recordKey>>({ name: 'records', encoding: 'binary' });
    const bytes = records.getBinary(recordKey(type, id))!;
    await records.put(recordKey(type, id), Buffer.from(rewrite(bytes)));
  } finally {
    await env.close();
  }
}

export async function lmdbHarness(): Promise<TierHarness> {
  const path = tempDir('wadi-lmdb-');
  return {
    open: async () => new LmdbTier({ path, mapSize: 1 << 20 }),
    corrupt: (type, id) => rewriteLmdbRecord(path, type, id, flipped),
    durable: true,
    propertyRuns: 100,
    dispose: async () => rmSync(path, { recursive: true, force: true }),
  };
}

let schemas = 0;

export async function postgresHarness(): Promise<TierHarness> {
  const url = inject('pgUrl');
  const schema = `t${process.pid}_${schemas++}`;
  const admin = async (sql: string, values: unknown[] = []): Promise<void> => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(sql, values);
    } finally {
      await client.end();
    }
  };
  return {
    open: () => PostgresTier.connect({ url, schema, poolSize: 3 }),
    corrupt: (type, id) => admin(`UPDATE "${schema}".sessions SET state = state || '\\x00'::bytea WHERE type = $1 AND id = $2`, [type, id]),
    durable: true,
    propertyRuns: 60,
    dispose: () => admin(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`),
  };
}
