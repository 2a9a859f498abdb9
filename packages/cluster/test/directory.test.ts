import { describe, expect, it } from 'vitest';
import { BucketDirectory } from '../src/index.js';

describe('BucketDirectory', () => {
  it('registers, looks up, moves and removes sessions', () => {
    const directory = new BucketDirectory(7);
    directory.register('cart\u0000a', 'n1', 0);
    directory.register('cart\u0000a', 'n2', 1);
    expect(directory.lookup('cart\u0000a')).toEqual({ node: 'n2', worker: 1 });
    directory.unregister('cart\u0000a', 'n1');
    expect(directory.size).toBe(1);
    directory.unregister('cart\u0000a', 'n2');
    expect(directory.lookup('cart\u0000a')).toBeUndefined();
  });

  it('a snapshot installed late never overrides or resurrects what arrived before it', () => {
    const directory = new BucketDirectory(1);
    directory.register('s\u0000moved', 'n3', 0);
    directory.register('s\u0000gone', 'n1', 0);
    directory.unregister('s\u0000gone', 'n1');
    directory.install(4, [
      ['s\u0000moved', 'n1', 1],
      ['s\u0000gone', 'n1', 0],
      ['s\u0000old', 'n2', 1],
    ]);
    expect(directory.installed).toBe(true);
    expect(directory.epoch).toBe(4);
    expect(directory.entries().sort()).toEqual([
      ['s\u0000moved', 'n3', 0],
      ['s\u0000old', 'n2', 1],
    ]);
  });

  it('forgets the sessions of a node that is gone', () => {
    const directory = new BucketDirectory(0);
    directory.install(1, [
      ['a', 'n1', 0],
      ['b', 'n2', 0],
      ['c', 'n1', 1],
    ]);
    expect(directory.forgetNode('n1')).toBe(2);
    expect(directory.entries()).toEqual([['b', 'n2', 0]]);
  });
});
