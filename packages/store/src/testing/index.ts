/**
 * @wadi/store/testing: helpers for tests and benchmarks that need a real PostgreSQL (the
 * store's own test setup and `pnpm bench` share them). Not for production code.
 */
export { findPostgresBinaries, startPostgres, type PostgresServer, type StartPostgresOptions } from './postgres.js';
