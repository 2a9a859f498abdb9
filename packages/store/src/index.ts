/**
 * @wadi/store: the store stack of a node. The tier contract (`Tier`), its implementations
 * (memory, LMDB for the local disk and the shared tier of one host, PostgreSQL for a shared tier
 * across hosts), evicters and a rate limiter that decide what to demote, and `StoreStack`, which
 * demotes between tiers. The caller drives everything: nothing here starts a timer.
 */
export * from './tier.js';
export * from './errors.js';
export { MemoryStorage, MemoryTier, type MemoryTierOptions } from './memory-tier.js';
export { LmdbTier, type LmdbTierOptions } from './lmdb-tier.js';
export { PostgresTier, type PostgresTierOptions } from './postgres-tier.js';
