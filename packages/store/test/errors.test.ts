/** The store's errors: codes, messages, and their class kept across the codec (threads, nodes). */
import { WadiError, decode, encode, registerErrorClass } from '@wadi/core';
import { describe, expect, it } from 'vitest';
import { CorruptRecord, StaleWrite, StoreFull } from '../src/index.js';
import { crc32, crc32Portable } from '../src/internal/checksum.js';

describe('store errors', () => {
  const samples = [
    new StaleWrite({ type: 'cart', id: 'a', version: 1, epoch: 2, storedVersion: 3, storedEpoch: 2, fence: 0, reason: 'version' }),
    new StaleWrite({ type: 'cart', id: 'b', version: 1, epoch: 2, storedVersion: null, storedEpoch: null, fence: 4, reason: 'fence' }, 'remove'),
    new CorruptRecord('cart', 'c', 'lmdb', 'checksum mismatch'),
    new StoreFull('disk', 'No space left on device'),
  ];

  it('are WadiErrors with stable codes and say what they are about', () => {
    expect(samples.map((e) => e.code)).toEqual(['WADI_STALE_WRITE', 'WADI_STALE_WRITE', 'WADI_CORRUPT_RECORD', 'WADI_STORE_FULL']);
    for (const error of samples) expect(error).toBeInstanceOf(WadiError);
    expect(samples[0]!.message).toBe('write of cart/a refused (version): version 1 epoch 2, stored version 3 epoch 2, bucket fence 0');
    expect(samples[1]!.message).toContain('remove of cart/b refused (fence)');
    expect(samples[2]!.message).toContain('cart/c in tier lmdb');
  });

  it('keep their class and fields across the codec', () => {
    for (const error of samples) {
      const back = decode(encode(error)) as Error;
      expect(back).toBeInstanceOf(error.constructor);
      expect({ ...back, message: back.message, name: back.name }).toEqual({ ...error, message: error.message, name: error.name });
    }
  });

  it('a code cannot be registered to two classes', () => {
    class Impostor extends WadiError {}
    expect(() => registerErrorClass('WADI_STORE_FULL', Impostor)).toThrow(/already registered/);
    expect(() => registerErrorClass('WADI_STORE_FULL', StoreFull)).not.toThrow();
  });

  it('the portable CRC-32 agrees with the native one', () => {
    const data = new Uint8Array(1000).map((_, i) => (i * 131) & 0xff);
    expect(crc32Portable(data)).toBe(crc32(data));
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });
});
