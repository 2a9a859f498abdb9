/**
 * The store's typed errors. They extend core's `WadiError` (stable `code`, `instanceof` across
 * threads: each class is registered with the codec, and every field is plain data so it survives
 * a thread or node boundary).
 */
import { WadiError, registerErrorClass } from '@wadi/core';

/** Why a write or remove was refused. */
export type StaleReason =
  /** The stored copy has a higher version. */
  | 'version'
  /** The stored copy was written under a higher epoch. */
  | 'epoch'
  /** The bucket's fence is above the writer's epoch. */
  | 'fence'
  /** A remove of an expired copy (`RemoveFence.expiredBy`) found one that does not expire by then: it was renewed. */
  | 'renewed';

export interface StaleWriteDetails {
  type: string;
  id: string;
  /** What the refused write or remove carried. */
  version: number;
  epoch: number;
  /** The stored copy's version and epoch (null when there is none). */
  storedVersion: number | null;
  storedEpoch: number | null;
  /** The bucket's fence when the decision was made (0 when never raised). */
  fence: number;
  reason: StaleReason;
}

/** A write (or remove) refused because a newer copy is stored or the writer's epoch is fenced. */
export class StaleWrite extends WadiError implements StaleWriteDetails {
  declare readonly code: 'WADI_STALE_WRITE';
  readonly type: string;
  readonly id: string;
  readonly version: number;
  readonly epoch: number;
  readonly storedVersion: number | null;
  readonly storedEpoch: number | null;
  readonly fence: number;
  readonly reason: StaleReason;

  constructor(details: StaleWriteDetails, operation: 'write' | 'remove' = 'write') {
    const stored = details.storedVersion === null ? 'none stored' : `stored version ${details.storedVersion} epoch ${details.storedEpoch}`;
    super(
      'WADI_STALE_WRITE',
      `${operation} of ${details.type}/${details.id} refused (${details.reason}): ` +
        `version ${details.version} epoch ${details.epoch}, ${stored}, bucket fence ${details.fence}`,
    );
    this.type = details.type;
    this.id = details.id;
    this.version = details.version;
    this.epoch = details.epoch;
    this.storedVersion = details.storedVersion;
    this.storedEpoch = details.storedEpoch;
    this.fence = details.fence;
    this.reason = details.reason;
  }
}

/** A stored record whose bytes do not decode. It has been moved to the tier's quarantine. */
export class CorruptRecord extends WadiError {
  declare readonly code: 'WADI_CORRUPT_RECORD';
  readonly type: string;
  readonly id: string;
  readonly tier: string;
  readonly reason: string;

  constructor(type: string, id: string, tier: string, reason: string) {
    super('WADI_CORRUPT_RECORD', `corrupt record ${type}/${id} in tier ${tier}: ${reason}; its bytes were moved to quarantine`);
    this.type = type;
    this.id = id;
    this.tier = tier;
    this.reason = reason;
  }
}

/** The tier has no room for the write (disk or quota full). Nothing stored before is lost. */
export class StoreFull extends WadiError {
  declare readonly code: 'WADI_STORE_FULL';
  readonly tier: string;

  constructor(tier: string, detail: string, options?: { cause?: unknown }) {
    super('WADI_STORE_FULL', `tier ${tier} is full: ${detail}`, options);
    this.tier = tier;
  }
}

registerErrorClass('WADI_STALE_WRITE', StaleWrite);
registerErrorClass('WADI_CORRUPT_RECORD', CorruptRecord);
registerErrorClass('WADI_STORE_FULL', StoreFull);
