/**
 * MemoryTier: the reference implementation of the tier contract, in this process's memory.
 * Other packages' tests use it as their store. It keeps records in their at-rest form (the same
 * bytes and checksum as LMDB), so it copies on the way in and out like a real tier, notices
 * corruption like one, and runs the whole behavioural suite.
 *
 * Its data lives in a `MemoryStorage`, which can outlive a tier: open a second `MemoryTier` on
 * the same storage to model a reopen, or give several tiers one store.
 */
import { Stopped } from '@wadi/core';
import { CorruptRecord } from './errors.js';
import { removeRefusal, writeRefusal } from './internal/fencing.js';
import { RecordDecodeFailure, decodeRecord, encodeRecord, metaOf } from './internal/record-codec.js';
import { checkBucket, checkEpoch, checkKey, checkRecord, checkRemoveFence, recordError } from './internal/validate.js';
import type { QuarantinedRecord, RemoveFence, SessionMeta, SessionRecord, SyncReadTier } from './tier.js';

interface Slot {
  type: string;
  id: string;
  bucket: number;
  bytes: Uint8Array;
}

/** The data of one or more `MemoryTier`s. */
export class MemoryStorage {
  readonly #slots = new Map<string, Slot>();
  readonly #buckets = new Map<number, Set<string>>();
  readonly #fences = new Map<number, number>();
  readonly #quarantine: QuarantinedRecord[] = [];

  /** The bytes stored for a session, as a tier would find them (tests and tooling). */
  rawRecord(type: string, id: string): Uint8Array | undefined {
    return this.#slots.get(slotKey(type, id))?.bytes;
  }

  /** Replaces the bytes stored for an existing session (tests: simulate corruption). */
  replaceRaw(type: string, id: string, bytes: Uint8Array): void {
    const slot = this.#slots.get(slotKey(type, id));
    if (slot === undefined) throw new Error(`no record ${type}/${id} to replace`);
    slot.bytes = bytes;
  }

  /** @internal */
  get(type: string, id: string): Slot | undefined {
    return this.#slots.get(slotKey(type, id));
  }

  /** @internal */
  put(record: SessionRecord): void {
    const key = slotKey(record.type, record.id);
    const old = this.#slots.get(key);
    if (old !== undefined && old.bucket !== record.bucket) this.#unindex(old.bucket, key);
    this.#slots.set(key, { type: record.type, id: record.id, bucket: record.bucket, bytes: encodeRecord(record) });
    let members = this.#buckets.get(record.bucket);
    if (members === undefined) this.#buckets.set(record.bucket, (members = new Set()));
    members.add(key);
  }

  /** @internal */
  delete(type: string, id: string): void {
    const key = slotKey(type, id);
    const old = this.#slots.get(key);
    if (old === undefined) return;
    this.#slots.delete(key);
    this.#unindex(old.bucket, key);
  }

  /** @internal Moves a record's bytes aside. */
  quarantine(slot: Slot, reason: string): void {
    this.delete(slot.type, slot.id);
    this.#quarantine.push({ type: slot.type, id: slot.id, reason, bytes: slot.bytes.byteLength, at: Date.now(), raw: slot.bytes });
  }

  /** @internal */
  fence(bucket: number): number {
    return this.#fences.get(bucket) ?? 0;
  }

  /** @internal */
  raiseFence(bucket: number, epoch: number): void {
    if (epoch > this.fence(bucket)) this.#fences.set(bucket, epoch);
  }

  /** @internal */
  bucketSlots(bucket: number): Slot[] {
    const out: Slot[] = [];
    for (const key of this.#buckets.get(bucket) ?? []) {
      const slot = this.#slots.get(key);
      if (slot !== undefined) out.push(slot);
    }
    return out;
  }

  /** @internal */
  quarantined(): readonly QuarantinedRecord[] {
    return this.#quarantine;
  }

  /** @internal */
  get size(): number {
    return this.#slots.size;
  }

  #unindex(bucket: number, key: string): void {
    const members = this.#buckets.get(bucket);
    members?.delete(key);
    if (members?.size === 0) this.#buckets.delete(bucket);
  }
}

export interface MemoryTierOptions {
  /** Defaults to 'memory'. */
  name?: string;
  /** Share data with other tiers or a later reopen; a fresh storage by default. */
  storage?: MemoryStorage;
}

export class MemoryTier implements SyncReadTier {
  readonly name: string;
  readonly durability = 'never: the records live in this process and are lost when it exits';
  readonly storage: MemoryStorage;
  #closed = false;

  constructor(options: MemoryTierOptions = {}) {
    this.name = options.name ?? 'memory';
    this.storage = options.storage ?? new MemoryStorage();
  }

  findSync(type: string, id: string): SessionMeta | undefined {
    return metaOf(this.loadSync(type, id));
  }

  loadSync(type: string, id: string): SessionRecord | undefined {
    this.#open();
    checkKey(type, id);
    const slot = this.storage.get(type, id);
    return slot === undefined ? undefined : this.#decode(slot);
  }

  async find(type: string, id: string): Promise<SessionMeta | undefined> {
    return this.findSync(type, id);
  }

  async load(type: string, id: string): Promise<SessionRecord | undefined> {
    return this.loadSync(type, id);
  }

  async store(record: SessionRecord): Promise<void> {
    this.#open();
    checkRecord(record);
    this.#store(record);
  }

  async storeMany(records: readonly SessionRecord[]): Promise<Array<Error | undefined>> {
    this.#open();
    return records.map((record) => {
      const invalid = recordError(record);
      if (invalid !== undefined) return invalid;
      try {
        this.#store(record);
        return undefined;
      } catch (error) {
        return error as Error;
      }
    });
  }

  async remove(type: string, id: string, fence: RemoveFence): Promise<boolean> {
    this.#open();
    checkKey(type, id);
    checkRemoveFence(fence);
    const slot = this.storage.get(type, id);
    if (slot === undefined) return false;
    const stored = this.#current(slot);
    // An unreadable copy has just been quarantined: nothing is left to remove.
    if (stored === undefined) return false;
    const refusal = removeRefusal(type, id, fence, stored, this.storage.fence(stored.bucket));
    if (refusal !== undefined) throw refusal;
    this.storage.delete(type, id);
    return true;
  }

  async *listBucket(bucket: number): AsyncIterable<SessionMeta> {
    this.#open();
    checkBucket(bucket);
    for (const slot of this.storage.bucketSlots(bucket)) {
      const record = this.#current(slot);
      if (record !== undefined) yield metaOf(record);
    }
  }

  async fence(bucket: number, epoch: number): Promise<void> {
    this.#open();
    checkBucket(bucket);
    checkEpoch(epoch);
    this.storage.raiseFence(bucket, epoch);
  }

  async *quarantined(): AsyncIterable<QuarantinedRecord> {
    this.#open();
    yield* this.storage.quarantined().map((entry) => ({ ...entry, raw: entry.raw.slice() }));
  }

  async count(): Promise<number> {
    this.#open();
    return this.storage.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #store(record: SessionRecord): void {
    const slot = this.storage.get(record.type, record.id);
    const stored = slot === undefined ? undefined : this.#current(slot);
    const refusal = writeRefusal(record.type, record.id, record, stored, this.storage.fence(record.bucket));
    if (refusal !== undefined) throw refusal;
    this.storage.put(record);
  }

  /** The decoded record, or undefined after quarantining bytes that do not decode (writes go on). */
  #current(slot: Slot): SessionRecord | undefined {
    const decoded = this.#decodeOrQuarantine(slot);
    return decoded instanceof RecordDecodeFailure ? undefined : decoded;
  }

  /** The decoded record; bytes that do not decode are quarantined and reported as CorruptRecord. */
  #decode(slot: Slot): SessionRecord {
    const decoded = this.#decodeOrQuarantine(slot);
    if (decoded instanceof RecordDecodeFailure) throw new CorruptRecord(slot.type, slot.id, this.name, decoded.reason);
    return decoded;
  }

  #decodeOrQuarantine(slot: Slot): SessionRecord | RecordDecodeFailure {
    try {
      return decodeRecord(slot.bytes, slot.type, slot.id);
    } catch (error) {
      if (!(error instanceof RecordDecodeFailure)) throw error;
      this.storage.quarantine(slot, error.reason);
      return error;
    }
  }

  #open(): void {
    if (this.#closed) throw new Stopped(`tier ${this.name} is closed`);
  }
}

function slotKey(type: string, id: string): string {
  // Length-prefixed, so no (type, id) pair can collide with another whatever characters they hold.
  return `${type.length}:${type}${id}`;
}
