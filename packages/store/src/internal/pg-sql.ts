/**
 * The SQL of PostgresTier: the schema and every statement, in one place, for one schema name.
 *
 * The acceptance rule (tier.ts) is stated here in SQL, each write in a single statement, so it
 * is decided against the latest committed rows however many nodes race:
 * - `INSERT ... ON CONFLICT DO UPDATE ... WHERE stored.version <= new.version AND
 *   stored.epoch <= new.epoch` locks the conflicting row and tests the latest committed version
 *   of it, never a snapshot: two writers cannot regress a record.
 * - The fence test joins the bucket's `fences` row `FOR SHARE`. `fence()` updates that row, so
 *   it waits for writes that hold the share lock, and a write that has to wait for a fence
 *   update re-reads the row (READ COMMITTED re-checks locked rows) and sees the new epoch: no
 *   write below a fence can commit after the fence was raised. Every bucket a write touches has
 *   a fences row (created at epoch 0 before the first write to it), so there is always a row to lock.
 */

export interface PgSql {
  schema: string[];
  ensureFences: string;
  /** The fenced upsert of `rows` records (8 parameters per record). */
  upsert(rows: number): string;
  /** Why records were refused: the stored version and epoch and the fence, per (type, id, bucket). */
  explain: string;
  load: string;
  find: string;
  quarantine: string;
  remove: string;
  raiseFence: string;
  listBucket: string;
  listQuarantine: string;
  count: string;
}

export const UPSERT_PARAMS_PER_ROW = 9;

/** The statements for tables in `schema` (a validated identifier). */
export function pgSql(schema: string): PgSql {
  const s = `"${schema}"`;
  return {
    schema: [
      `CREATE SCHEMA IF NOT EXISTS ${s}`,
      `CREATE TABLE IF NOT EXISTS ${s}.sessions (
         type text NOT NULL,
         id text NOT NULL,
         bucket integer NOT NULL,
         version bigint NOT NULL,
         epoch bigint NOT NULL,
         state bytea NOT NULL,
         updated_at double precision NOT NULL,
         checksum integer NOT NULL,
         expires_at double precision,
         PRIMARY KEY (type, id))`,
      // Tables made before sessions could expire.
      `ALTER TABLE ${s}.sessions ADD COLUMN IF NOT EXISTS expires_at double precision`,
      `CREATE INDEX IF NOT EXISTS sessions_by_bucket ON ${s}.sessions (bucket, type, id)`,
      `CREATE TABLE IF NOT EXISTS ${s}.fences (
         bucket integer PRIMARY KEY,
         epoch bigint NOT NULL)`,
      `CREATE TABLE IF NOT EXISTS ${s}.quarantine (
         seq bigserial PRIMARY KEY,
         type text NOT NULL,
         id text NOT NULL,
         reason text NOT NULL,
         at double precision NOT NULL,
         bucket integer,
         version bigint,
         epoch bigint,
         raw bytea NOT NULL)`,
    ],
    ensureFences: `INSERT INTO ${s}.fences (bucket, epoch) SELECT unnest($1::integer[]), 0 ON CONFLICT (bucket) DO NOTHING`,
    upsert(rows) {
      const values: string[] = [];
      for (let r = 0; r < rows; r++) {
        const p = r * UPSERT_PARAMS_PER_ROW;
        // The first row's casts type the whole VALUES list.
        values.push(
          r === 0
            ? `($1::text, $2::text, $3::integer, $4::bigint, $5::bigint, $6::bytea, $7::float8, $8::integer, $9::float8)`
            : `($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5}, $${p + 6}, $${p + 7}, $${p + 8}, $${p + 9})`,
        );
      }
      return `WITH input (type, id, bucket, version, epoch, state, updated_at, checksum, expires_at) AS (VALUES ${values.join(', ')})
        INSERT INTO ${s}.sessions AS stored (type, id, bucket, version, epoch, state, updated_at, checksum, expires_at)
        SELECT i.type, i.id, i.bucket, i.version, i.epoch, i.state, i.updated_at, i.checksum, i.expires_at
          FROM input i JOIN ${s}.fences f ON f.bucket = i.bucket
         WHERE i.epoch >= f.epoch
         ORDER BY i.type, i.id
           FOR SHARE OF f
        ON CONFLICT (type, id) DO UPDATE
           SET bucket = excluded.bucket, version = excluded.version, epoch = excluded.epoch,
               state = excluded.state, updated_at = excluded.updated_at, checksum = excluded.checksum,
               expires_at = excluded.expires_at
         WHERE stored.version <= excluded.version AND stored.epoch <= excluded.epoch
        RETURNING stored.type, stored.id`;
    },
    explain: `SELECT i.type, i.id, s.version::float8 AS version, s.epoch::float8 AS epoch, s.expires_at, COALESCE(f.epoch, 0)::float8 AS fence
        FROM unnest($1::text[], $2::text[], $3::integer[]) AS i (type, id, bucket)
        LEFT JOIN ${s}.sessions s ON s.type = i.type AND s.id = i.id
        LEFT JOIN ${s}.fences f ON f.bucket = i.bucket`,
    load: `SELECT bucket, version::float8 AS version, epoch::float8 AS epoch, state, updated_at, checksum, expires_at
        FROM ${s}.sessions WHERE type = $1 AND id = $2`,
    find: `SELECT bucket, version::float8 AS version, epoch::float8 AS epoch, length(state) AS bytes, updated_at, expires_at
        FROM ${s}.sessions WHERE type = $1 AND id = $2`,
    // Moves a row whose state failed its checksum, only if it is still the row that was read.
    quarantine: `WITH moved AS (
          DELETE FROM ${s}.sessions
           WHERE type = $1 AND id = $2 AND version = $3 AND epoch = $4 AND checksum = $5 AND updated_at = $6
          RETURNING type, id, bucket, version, epoch, state)
        INSERT INTO ${s}.quarantine (type, id, reason, at, bucket, version, epoch, raw)
        SELECT type, id, $7, $8, bucket, version, epoch, state FROM moved`,
    // Deletes only if the claim covers the latest committed row and its fence; also says
    // whether a row existed (so a refusal can be told from an absent session).
    remove: `WITH target AS (
          SELECT bucket FROM ${s}.sessions WHERE type = $1 AND id = $2),
        deleted AS (
          DELETE FROM ${s}.sessions stored
           WHERE stored.type = $1 AND stored.id = $2 AND stored.version <= $3 AND stored.epoch <= $4
             AND ($5::float8 IS NULL OR stored.expires_at <= $5::float8)
             AND $4 >= (SELECT f.epoch FROM ${s}.fences f WHERE f.bucket = stored.bucket FOR SHARE)
          RETURNING 1)
        SELECT (SELECT count(*) FROM deleted)::integer AS deleted, t.bucket
          FROM (SELECT 1) one LEFT JOIN target t ON true`,
    raiseFence: `INSERT INTO ${s}.fences (bucket, epoch) VALUES ($1, $2)
        ON CONFLICT (bucket) DO UPDATE SET epoch = GREATEST(${s}.fences.epoch, excluded.epoch)`,
    listBucket: `SELECT type, id, version::float8 AS version, epoch::float8 AS epoch, updated_at, expires_at, length(state) AS bytes
        FROM ${s}.sessions WHERE bucket = $1 AND (type, id) > ($2, $3) ORDER BY type, id LIMIT $4`,
    listQuarantine: `SELECT seq::float8 AS seq, type, id, reason, at, raw FROM ${s}.quarantine WHERE seq > $1 ORDER BY seq LIMIT $2`,
    count: `SELECT count(*)::float8 AS count FROM ${s}.sessions`,
  };
}
