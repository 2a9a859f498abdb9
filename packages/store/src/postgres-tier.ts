/**
 * PostgresTier: the tier contract over PostgreSQL (the `pg` driver, pure JavaScript), a shared
 * tier every node of a cluster can reach. Schema (created on connect, in its own schema):
 * `sessions` (primary key (type, id), index on bucket), `fences` (bucket -> epoch) and
 * `quarantine`. Every write is one fenced statement (internal/pg-sql.ts says why that is safe
 * under races); `storeMany` writes a batch as one multi-row statement.
 *
 * Integrity: columns are typed, so only the opaque state can rot unnoticed; each row carries the
 * CRC-32 of its state, and a row whose state fails it is moved to `quarantine` by `load`.
 *
 * Durability: `store` resolves when PostgreSQL committed, i.e. as durable as the server makes a
 * commit (`fsync`, `synchronous_commit`, replication).
 */
import { InvalidArgument, Stopped } from '@wadi/core';
import pg from 'pg';
import { CorruptRecord, StaleWrite } from './errors.js';
import { removeRefusal, writeRefusal } from './internal/fencing.js';
import { crc32 } from './internal/checksum.js';
import { UPSERT_PARAMS_PER_ROW, pgSql, type PgSql } from './internal/pg-sql.js';
import { storageErrorSync } from './internal/storage-errors.js';
import { checkBucket, checkEpoch, checkKey, checkRemoveFence, recordError, storeOne } from './internal/validate.js';
import type { QuarantinedRecord, RemoveFence, SessionMeta, SessionRecord, Tier } from './tier.js';

export interface PostgresTierOptions {
  /** Connection string, e.g. postgres://user@host:5432/db (else libpq's PG* variables apply). */
  url?: string;
  /** Schema holding the tier's tables; created if missing. Default 'wadi'. */
  schema?: string;
  /** Connections in the pool (default 4). */
  poolSize?: number;
  /** Server-side limit per statement, ms (default 10,000); a statement past it fails. */
  statementTimeoutMs?: number;
  /** Records per multi-row statement in `storeMany` (default 500). */
  maxBatchRows?: number;
  /** The tier's name in errors and stats; defaults to 'postgres'. */
  name?: string;
}

/** SQLSTATEs after which a statement is simply run again: it was rolled back whole. */
const RETRYABLE = new Set(['40P01' /* deadlock_detected */, '40001' /* serialization_failure */]);
const MAX_RETRIES = 5;
const LIST_PAGE = 500;
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** What is stored for a (type, id, bucket), as `explain` reads it. */
interface ExplainRow {
  version: number | null;
  epoch: number | null;
  expires_at: number | null;
  fence: number;
}

interface RecordRow {
  bucket: number;
  version: number;
  epoch: number;
  state: Buffer;
  updated_at: number;
  checksum: number;
  expires_at: number | null;
}

/** A row's `expires_at` on a record or meta: absent when null (never expires). */
function withExpiry<T extends SessionMeta | SessionRecord>(value: T, expiresAt: number | null): T {
  if (expiresAt !== null) value.expiresAt = expiresAt;
  return value;
}

export class PostgresTier implements Tier {
  readonly name: string;
  readonly durability = 'when store() resolves: committed by PostgreSQL (as durable as its fsync / synchronous_commit / replication make a commit)';
  readonly #pool: pg.Pool;
  readonly #sql: PgSql;
  readonly #maxBatchRows: number;
  /** Buckets known to have a fences row (rows are never deleted). */
  readonly #fencedBuckets = new Set<number>();
  #closed = false;

  private constructor(pool: pg.Pool, sql: PgSql, options: PostgresTierOptions) {
    this.#pool = pool;
    this.#sql = sql;
    this.name = options.name ?? 'postgres';
    this.#maxBatchRows = options.maxBatchRows ?? 500;
  }

  /** Connects, creates the schema if needed, and returns the tier. */
  static async connect(options: PostgresTierOptions = {}): Promise<PostgresTier> {
    const schema = options.schema ?? 'wadi';
    if (!SCHEMA_NAME.test(schema)) throw new InvalidArgument(`schema must be a lower-case SQL identifier, got ${JSON.stringify(schema)}`);
    const maxBatchRows = options.maxBatchRows ?? 500;
    if (!Number.isInteger(maxBatchRows) || maxBatchRows < 1 || maxBatchRows * UPSERT_PARAMS_PER_ROW > 65535) {
      throw new InvalidArgument(`maxBatchRows must be an integer in [1, ${Math.floor(65535 / UPSERT_PARAMS_PER_ROW)}]`);
    }
    const pool = new pg.Pool({
      ...(options.url === undefined ? {} : { connectionString: options.url }),
      max: options.poolSize ?? 4,
      statement_timeout: options.statementTimeoutMs ?? 10_000,
      connectionTimeoutMillis: options.statementTimeoutMs ?? 10_000,
      application_name: 'wadi-store',
    });
    // An idle connection that breaks is dropped by the pool; without a listener it would crash the process.
    pool.on('error', () => undefined);
    const sql = pgSql(schema);
    try {
      await createSchema(pool, schema, sql);
    } catch (error) {
      await pool.end();
      throw error;
    }
    return new PostgresTier(pool, sql, options);
  }

  // Reads

  async find(type: string, id: string): Promise<SessionMeta | undefined> {
    this.#ensureOpen();
    checkKey(type, id);
    const { rows } = await this.#query<{ bucket: number; version: number; epoch: number; bytes: number; updated_at: number; expires_at: number | null }>(this.#sql.find, [type, id]);
    const row = rows[0];
    if (row === undefined) return undefined;
    return withExpiry({ type, id, bucket: row.bucket, version: row.version, epoch: row.epoch, updatedAt: row.updated_at, bytes: row.bytes }, row.expires_at);
  }

  async load(type: string, id: string): Promise<SessionRecord | undefined> {
    this.#ensureOpen();
    checkKey(type, id);
    const { rows } = await this.#query<RecordRow>(this.#sql.load, [type, id]);
    const row = rows[0];
    if (row === undefined) return undefined;
    const state = new Uint8Array(row.state.buffer, row.state.byteOffset, row.state.byteLength);
    const actual = crc32(state) | 0;
    if (actual !== row.checksum) {
      const reason = `state checksum mismatch (stored ${row.checksum >>> 0}, computed ${actual >>> 0})`;
      await this.#query(this.#sql.quarantine, [type, id, row.version, row.epoch, row.checksum, row.updated_at, reason, Date.now()]);
      throw new CorruptRecord(type, id, this.name, reason);
    }
    return withExpiry({ type, id, bucket: row.bucket, version: row.version, epoch: row.epoch, updatedAt: row.updated_at, state }, row.expires_at);
  }

  async *listBucket(bucket: number): AsyncIterable<SessionMeta> {
    this.#ensureOpen();
    checkBucket(bucket);
    // Keyset pages: each page is its own short statement, no cursor or transaction stays open.
    let after: [string, string] = ['', ''];
    for (;;) {
      const { rows } = await this.#query<{ type: string; id: string; version: number; epoch: number; updated_at: number; expires_at: number | null; bytes: number }>(
        this.#sql.listBucket,
        [bucket, after[0], after[1], LIST_PAGE],
      );
      for (const row of rows) {
        yield withExpiry({ type: row.type, id: row.id, bucket, version: row.version, epoch: row.epoch, updatedAt: row.updated_at, bytes: row.bytes }, row.expires_at);
      }
      const last = rows[rows.length - 1];
      if (last === undefined || rows.length < LIST_PAGE) return;
      after = [last.type, last.id];
    }
  }

  async *quarantined(): AsyncIterable<QuarantinedRecord> {
    this.#ensureOpen();
    let after = 0;
    for (;;) {
      const { rows } = await this.#query<{ seq: number; type: string; id: string; reason: string; at: number; raw: Buffer }>(this.#sql.listQuarantine, [after, LIST_PAGE]);
      for (const row of rows) {
        const raw = new Uint8Array(row.raw.buffer, row.raw.byteOffset, row.raw.byteLength);
        yield { type: row.type, id: row.id, reason: row.reason, at: row.at, bytes: raw.byteLength, raw };
      }
      const last = rows[rows.length - 1];
      if (last === undefined || rows.length < LIST_PAGE) return;
      after = last.seq;
    }
  }

  async count(): Promise<number> {
    this.#ensureOpen();
    const { rows } = await this.#query<{ count: number }>(this.#sql.count, []);
    return rows[0]!.count;
  }

  // Writes

  store(record: SessionRecord): Promise<void> {
    return storeOne(this, record);
  }

  async storeMany(records: readonly SessionRecord[]): Promise<Array<Error | undefined>> {
    this.#ensureOpen();
    const outcomes: Array<Error | undefined> = records.map((record) => recordError(record));
    const valid = records.map((_, i) => i).filter((i) => outcomes[i] === undefined);
    try {
      await this.#ensureFenceRows(valid.map((i) => records[i]!.bucket));
    } catch (error) {
      const failure = storageErrorSync(error, this.name);
      for (const i of valid) outcomes[i] = failure;
      return outcomes;
    }
    // ON CONFLICT cannot touch a row twice in one statement: a key repeated in the batch goes
    // into a later round, so the batch's records apply in their order.
    for (const round of rounds(records, valid)) {
      for (let start = 0; start < round.length; start += this.#maxBatchRows) {
        await this.#upsert(records, round.slice(start, start + this.#maxBatchRows), outcomes);
      }
    }
    return outcomes;
  }

  async remove(type: string, id: string, fence: RemoveFence): Promise<boolean> {
    this.#ensureOpen();
    checkKey(type, id);
    checkRemoveFence(fence);
    const { rows } = await this.#query<{ deleted: number; bucket: number | null }>(this.#sql.remove, [type, id, fence.version, fence.epoch, fence.expiredBy ?? null]);
    const row = rows[0]!;
    if (row.deleted > 0) return true;
    if (row.bucket === null) return false;
    // Refused (or removed by someone else meanwhile): say why from what is stored now.
    const now = (await this.#query<ExplainRow>(this.#sql.explain, [[type], [id], [row.bucket]])).rows[0]!;
    if (now.version === null || now.epoch === null) return false;
    const stored = { version: now.version, epoch: now.epoch, expiresAt: now.expires_at ?? undefined };
    throw removeRefusal(type, id, fence, stored, now.fence) ?? raced(type, id, fence, stored, now.fence, 'remove');
  }

  async fence(bucket: number, epoch: number): Promise<void> {
    this.#ensureOpen();
    checkBucket(bucket);
    checkEpoch(epoch);
    await this.#query(this.#sql.raiseFence, [bucket, epoch]);
    this.#fencedBuckets.add(bucket);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }

  /** One multi-row fenced upsert; records it did not write get their `StaleWrite`. */
  async #upsert(records: readonly SessionRecord[], indexes: number[], outcomes: Array<Error | undefined>): Promise<void> {
    const params: unknown[] = [];
    for (const i of indexes) {
      const r = records[i]!;
      const state = Buffer.from(r.state.buffer, r.state.byteOffset, r.state.byteLength);
      params.push(r.type, r.id, r.bucket, r.version, r.epoch, state, r.updatedAt, crc32(r.state) | 0, r.expiresAt ?? null);
    }
    let written: Set<string>;
    try {
      const { rows } = await this.#query<{ type: string; id: string }>(this.#sql.upsert(indexes.length), params);
      written = new Set(rows.map((row) => keyOf(row.type, row.id)));
    } catch (error) {
      const failure = storageErrorSync(error, this.name);
      for (const i of indexes) outcomes[i] = failure;
      return;
    }
    const refused = indexes.filter((i) => !written.has(keyOf(records[i]!.type, records[i]!.id)));
    if (refused.length > 0) await this.#explain(records, refused, outcomes);
  }

  /** Builds each refused record's `StaleWrite` from what is stored now. */
  async #explain(records: readonly SessionRecord[], refused: number[], outcomes: Array<Error | undefined>): Promise<void> {
    const pick = <T>(f: (r: SessionRecord) => T): T[] => refused.map((i) => f(records[i]!));
    const { rows } = await this.#query<ExplainRow>(this.#sql.explain, [
      pick((r) => r.type),
      pick((r) => r.id),
      pick((r) => r.bucket),
    ]);
    refused.forEach((index, k) => {
      const record = records[index]!;
      const row = rows[k]!;
      const stored = row.version === null || row.epoch === null ? undefined : { version: row.version, epoch: row.epoch };
      outcomes[index] = writeRefusal(record.type, record.id, record, stored, row.fence) ?? raced(record.type, record.id, record, stored, row.fence, 'write');
    });
  }

  async #ensureFenceRows(buckets: number[]): Promise<void> {
    const missing = [...new Set(buckets)].filter((bucket) => !this.#fencedBuckets.has(bucket));
    if (missing.length === 0) return;
    await this.#query(this.#sql.ensureFences, [missing]);
    for (const bucket of missing) this.#fencedBuckets.add(bucket);
  }

  async #query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#pool.query<R>(text, values);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        if (attempt < MAX_RETRIES && typeof code === 'string' && RETRYABLE.has(code)) {
          await new Promise((resolve) => setTimeout(resolve, 2 ** attempt + Math.random() * 5));
          continue;
        }
        throw storageErrorSync(error, this.name);
      }
    }
  }

  #ensureOpen(): void {
    if (this.#closed) throw new Stopped(`tier ${this.name} is closed`);
  }
}

/** Runs the DDL once across every node connecting at the same time (CREATE ... IF NOT EXISTS races). */
async function createSchema(pool: pg.Pool, schema: string, sql: PgSql): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`wadi-store-schema:${schema}`]);
    for (const statement of sql.schema) await client.query(statement);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** Splits `indexes` into rounds in which each (type, id) appears at most once, keeping order. */
function rounds(records: readonly SessionRecord[], indexes: number[]): number[][] {
  const out: number[][] = [];
  const seen = new Map<string, number>();
  for (const i of indexes) {
    const key = keyOf(records[i]!.type, records[i]!.id);
    const round = seen.get(key) ?? 0;
    seen.set(key, round + 1);
    (out[round] ??= []).push(i);
  }
  return out;
}

function keyOf(type: string, id: string): string {
  return `${type.length}:${type}${id}`;
}

/**
 * The statement refused, but what is stored by the time we look would be accepted: another
 * writer changed it in between. Still a refusal; report what is stored now.
 */
function raced(
  type: string,
  id: string,
  attempt: { version: number; epoch: number },
  stored: { version: number; epoch: number } | undefined,
  fence: number,
  operation: 'write' | 'remove',
): StaleWrite {
  return new StaleWrite(
    {
      type,
      id,
      version: attempt.version,
      epoch: attempt.epoch,
      storedVersion: stored?.version ?? null,
      storedEpoch: stored?.epoch ?? null,
      fence,
      reason: 'version',
    },
    operation,
  );
}
