/**
 * Argument checks shared by every tier: a record or fence that can never be stored is refused
 * with core's `InvalidArgument` before any I/O, the same way in every tier.
 */
import { InvalidArgument } from '@wadi/core';
import type { RemoveFence, SessionRecord, Tier } from '../tier.js';

/** Returns why `record` cannot be stored, or undefined when it can. */
export function recordProblem(record: SessionRecord): string | undefined {
  if (typeof record !== 'object' || record === null) return 'a record must be an object';
  const keyProblem = keyProblemOf(record.type, record.id);
  if (keyProblem !== undefined) return keyProblem;
  if (!isCount(record.bucket) || record.bucket > 0x7fffffff) return `bucket must be an integer in [0, 2^31), got ${String(record.bucket)}`;
  if (!isCount(record.version)) return `version must be a non-negative safe integer, got ${String(record.version)}`;
  if (!isCount(record.epoch)) return `epoch must be a non-negative safe integer, got ${String(record.epoch)}`;
  if (!(record.state instanceof Uint8Array)) return 'state must be a Uint8Array';
  if (typeof record.updatedAt !== 'number' || !Number.isFinite(record.updatedAt)) return 'updatedAt must be a finite number';
  if (record.expiresAt !== undefined && (typeof record.expiresAt !== 'number' || !Number.isFinite(record.expiresAt))) return 'expiresAt must be a finite number when given';
  return undefined;
}

export function checkRecord(record: SessionRecord): void {
  const problem = recordProblem(record);
  if (problem !== undefined) throw new InvalidArgument(`cannot store ${describeKey(record)}: ${problem}`);
}

/** `recordProblem` as an outcome for `storeMany`. */
export function recordError(record: SessionRecord): InvalidArgument | undefined {
  const problem = recordProblem(record);
  return problem === undefined ? undefined : new InvalidArgument(`cannot store ${describeKey(record)}: ${problem}`);
}

/** Longest type name (UTF-16 units) a tier accepts: short enough for any tier's keys. */
export const MAX_TYPE_LENGTH = 256;

function keyProblemOf(type: unknown, id: unknown): string | undefined {
  if (typeof type !== 'string' || type.length === 0 || type.length > MAX_TYPE_LENGTH) {
    return `type must be a string of 1 to ${MAX_TYPE_LENGTH} characters`;
  }
  if (typeof id !== 'string' || id.length === 0) return 'id must be a non-empty string';
  return undefined;
}

export function checkKey(type: string, id: string): void {
  const problem = keyProblemOf(type, id);
  if (problem !== undefined) throw new InvalidArgument(problem);
}

export function checkRemoveFence(fence: RemoveFence): void {
  if (typeof fence !== 'object' || fence === null || !isCount(fence.version) || !isCount(fence.epoch)) {
    throw new InvalidArgument('a remove needs { version, epoch }, non-negative safe integers');
  }
  if (fence.expiredBy !== undefined && !(typeof fence.expiredBy === 'number' && Number.isFinite(fence.expiredBy))) {
    throw new InvalidArgument('a remove\'s expiredBy must be a finite number when given');
  }
}

export function checkBucket(bucket: number): void {
  if (!isCount(bucket) || bucket > 0x7fffffff) throw new InvalidArgument(`bucket must be an integer in [0, 2^31), got ${String(bucket)}`);
}

export function checkEpoch(epoch: number): void {
  if (!isCount(epoch)) throw new InvalidArgument(`epoch must be a non-negative safe integer, got ${String(epoch)}`);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function describeKey(record: SessionRecord): string {
  const type = typeof record?.type === 'string' ? record.type : '?';
  const id = typeof record?.id === 'string' ? record.id : '?';
  return `${type}/${id}`;
}

/** `store` in terms of `storeMany`, for tiers whose single write is a batch of one. */
export async function storeOne(tier: Pick<Tier, 'storeMany'>, record: SessionRecord): Promise<void> {
  checkRecord(record);
  const [outcome] = await tier.storeMany([record]);
  if (outcome !== undefined) throw outcome;
}
