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
export { AnyEvicter, IdleEvicter, LruEvicter, MemoryEvicter, anyOf, type Evicter } from './evicters.js';
export { RateLimiter, type RateLimiterOptions } from './rate-limiter.js';
export { StoreStack, type DemoteOutcome, type DemoteResult, type Located, type StackStats, type StackTierStats } from './store-stack.js';
