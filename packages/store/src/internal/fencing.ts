/**
 * The one acceptance rule for writes and removes (see tier.ts), as a pure function, so the
 * tiers that decide in JavaScript (memory, LMDB) decide identically. PostgresTier states the
 * same rule in SQL; the behavioural suite holds all three to it.
 */
import { StaleWrite } from '../errors.js';
import type { RemoveFence } from '../tier.js';

export interface Stamp {
  version: number;
  epoch: number;
  expiresAt?: number | undefined;
}

/** Why storing `write` over `stored` under bucket fence `fence` is refused, or undefined. */
export function writeRefusal(type: string, id: string, write: Stamp, stored: Stamp | undefined, fence: number): StaleWrite | undefined {
  const reason =
    write.epoch < fence ? 'fence' : stored === undefined ? undefined : write.epoch < stored.epoch ? 'epoch' : write.version < stored.version ? 'version' : undefined;
  if (reason === undefined) return undefined;
  return new StaleWrite({ type, id, ...pick(write), ...storedFields(stored), fence, reason }, 'write');
}

/** Why removing the stored copy with claim `claim` is refused, or undefined. */
export function removeRefusal(type: string, id: string, claim: RemoveFence, stored: Stamp, fence: number): StaleWrite | undefined {
  const renewed = claim.expiredBy !== undefined && !(stored.expiresAt !== undefined && stored.expiresAt <= claim.expiredBy);
  const reason =
    claim.epoch < fence ? 'fence' : stored.epoch > claim.epoch ? 'epoch' : stored.version > claim.version ? 'version' : renewed ? 'renewed' : undefined;
  if (reason === undefined) return undefined;
  return new StaleWrite({ type, id, ...pick(claim), ...storedFields(stored), fence, reason }, 'remove');
}

function pick(stamp: Stamp): Stamp {
  return { version: stamp.version, epoch: stamp.epoch };
}

function storedFields(stored: Stamp | undefined): { storedVersion: number | null; storedEpoch: number | null } {
  return stored === undefined ? { storedVersion: null, storedEpoch: null } : { storedVersion: stored.version, storedEpoch: stored.epoch };
}
