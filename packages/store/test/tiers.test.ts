/** The behavioural suite against every tier. */
import { lmdbHarness, memoryHarness, postgresHarness } from './harnesses.js';
import { tierSuite } from './tier-suite.js';

tierSuite('MemoryTier', memoryHarness);
tierSuite('LmdbTier', lmdbHarness);
tierSuite('PostgresTier', postgresHarness);
