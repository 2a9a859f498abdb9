import { describe, expect, it } from 'vitest';
import { BucketDirectory } from '../src/index.js';

describe('BucketDirectory', () => {
  it('registers, looks up, moves and removes sessions', () => {
    const directory = new BucketDirectory(7);
    directory.register('cart\u0000a', 'n1', 0, 0);
    directory.register('cart\u0000a', 'n2', 1, 1);
    expect(directory.lookup('cart\u0000a')).toEqual({ node: 'n2', worker: 1, version: 1 });
    directory.unregister('cart\u0000a', 'n1', 0);
    expect(directory.size).toBe(1);
    directory.unregister('cart\u0000a', 'n2', 1);
    expect(directory.lookup('cart\u0000a')).toBeUndefined();
  });

  it('of two claims for one session the newer version wins, whatever order they arrive in', () => {
    const directory = new BucketDirectory(7);
    directory.register('s', 'n2', 0, 2);
    directory.register('s', 'n1', 1, 1); // the older location, arriving late
    expect(directory.lookup('s')).toEqual({ node: 'n2', worker: 0, version: 2 });
    directory.unregister('s', 'n2', 1); // an older removal does not undo the newer claim
    expect(directory.lookup('s')?.node).toBe('n2');
  });

  it('a snapshot installed late never overrides or resurrects what arrived before it', () => {
    const directory = new BucketDirectory(1);
    directory.register('s\u0000moved', 'n3', 0, 1);
    directory.register('s\u0000gone', 'n1', 0, 0);
    directory.unregister('s\u0000gone', 'n1', 0);
    directory.install(4, [
      ['s\u0000moved', 'n1', 1, 0],
      ['s\u0000gone', 'n1', 0, 0],
      ['s\u0000old', 'n2', 1, 0],
    ]);
    expect(directory.installed).toBe(true);
    expect(directory.epoch).toBe(4);
    expect(directory.entries().sort()).toEqual([
      ['s\u0000moved', 'n3', 0, 1],
      ['s\u0000old', 'n2', 1, 0],
    ]);
  });

  it('a sync is the truth for its node and worker, before or after the snapshot', () => {
    const directory = new BucketDirectory(1);
    directory.register('elsewhere', 'n2', 0, 0);
    // n1/0 says it hosts only `kept`: the snapshot's other entry for n1/0 is a ghost.
    directory.sync('n1', 0, [['kept', 0]]);
    directory.install(2, [
      ['ghost', 'n1', 0, 0],
      ['kept', 'n1', 0, 0],
      ['other-worker', 'n1', 1, 0],
    ]);
    expect(directory.entries().sort()).toEqual([
      ['elsewhere', 'n2', 0, 0],
      ['kept', 'n1', 0, 0],
      ['other-worker', 'n1', 1, 0],
    ]);
    directory.sync('n1', 1, []);
    expect(directory.lookup('other-worker')).toBeUndefined();
    expect(directory.size).toBe(2);
  });

  it('forgets the sessions of a node that is gone', () => {
    const directory = new BucketDirectory(0);
    directory.install(1, [
      ['a', 'n1', 0, 0],
      ['b', 'n2', 0, 0],
      ['c', 'n1', 1, 0],
    ]);
    expect(directory.forgetNode('n1')).toBe(2);
    expect(directory.entries()).toEqual([['b', 'n2', 0, 0]]);
  });
});
