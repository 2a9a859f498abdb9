import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Starts a private PostgreSQL for the whole run (or uses WADI_PG_URL) and stops it after.
    globalSetup: ['./test/global-setup.ts'],
  },
});
