/**
 * One private PostgreSQL server for the store's test run (see src/testing/postgres.ts), or the
 * server named by WADI_PG_URL. Its URL reaches the tests through `inject('pgUrl')`. Missing
 * server binaries fail the run with instructions: these tests never skip.
 */
import type { TestProject } from 'vitest/node';
import { startPostgres } from '../src/testing/postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startPostgres({ fast: true });
  project.provide('pgUrl', server.url);
  return () => server.stop();
}
