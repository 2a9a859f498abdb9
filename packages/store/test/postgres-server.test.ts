/** The private PostgreSQL helper shared by the test setup and the benchmarks. */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { findPostgresBinaries, startPostgres } from '../src/testing/index.js';

describe('startPostgres', () => {
  it('without server binaries, fails saying how to install them', () => {
    expect(() => findPostgresBinaries('/nonexistent/postgresql')).toThrow(/apt-get install -y --no-install-recommends postgresql/);
  });

  it('starts a private server on loopback and removes every trace of it on stop', async () => {
    const server = await startPostgres({ fast: true, private: true });
    const { existsSync } = await import('node:fs');
    try {
      expect(server.url).toMatch(/^postgres:\/\/wadi@127\.0\.0\.1:\d+\/postgres$/);
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      const { rows } = await client.query<{ fsync: string }>('SHOW fsync');
      await client.end();
      expect(rows[0]!.fsync).toBe('off');
      expect(existsSync(server.dataDir!)).toBe(true);
    } finally {
      await server.stop();
    }
    expect(existsSync(server.dataDir!)).toBe(false);
  });
});
