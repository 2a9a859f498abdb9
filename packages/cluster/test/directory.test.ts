import { describe, expect, it } from 'vitest';
import { BucketDirectory } from '../src/index.js';

describe('BucketDirectory', () => {
  it('registers, looks up, moves and removes sessions', () => {
    const directory = new BucketDirectory(7);
    directory.register('cart\u0000a', 'n1', 0, 0);
    directory.register('cart\u0000a', 'n2', 1, 1);
    expect(directory.lookup('cart\u0000a')).toEqual({ node: 'n2', worker: 1, version: 1, confirmed: true, onDisk: false });
    directory.unregister('cart\u0000a', 'n1', 0);
    expect(directory.size).toBe(1);
    directory.unregister('cart\u0000a', 'n2', 1);
    expect(directory.lookup('cart\u0000a')).toBeUndefined();
  });

  it('of two claims for one session the newer version wins, whatever order they arrive in', () => {
    const directory = new BucketDirectory(7);
    directory.register('s', 'n2', 0, 2);
    directory.register('s', 'n1', 1, 1); // the older location, arriving late
    expect(directory.lookup('s')).toEqual({ node: 'n2', worker: 0, version: 2, confirmed: true, onDisk: false });
    directory.unregister('s', 'n2', 1); // an older removal does not undo the newer claim
    expect(directory.lookup('s')?.node).toBe('n2');
  });

  it("answers a node's re-announcement with the claims it holds newer elsewhere", () => {
    const directory = new BucketDirectory(7);
    directory.register('s\u0000recreated', 'n2', 0, 3); // created again on n2 while n1 was down
    directory.register('s\u0000mine', 'n1', 0, 1);
    directory.register('s\u0000older-here', 'n1', 0, 5);
    const stale = directory.sync('n1', 0, [
      ['s\u0000recreated', 1],
      ['s\u0000mine', 1],
      ['s\u0000older-here', 4], // its own entry is newer: a late sync, not a copy to drop
      ['s\u0000new', 0],
    ]);
    expect(stale).toEqual(['s\u0000recreated']);
    expect(directory.lookup('s\u0000recreated')?.node).toBe('n2');
    expect(directory.lookup('s\u0000new')?.node).toBe('n1');
  });

  it("keeps each session's tier: demoted to disk, promoted back, carried through a handoff and a re-announcement", () => {
    const directory = new BucketDirectory(7);
    directory.register('s\u0000a', 'n1', 0, 2);
    directory.setTier('s\u0000a', 'n1', 2, true);
    directory.setTier('s\u0000a', 'n2', 2, false); // names another location: ignored
    expect(directory.lookup('s\u0000a')?.onDisk).toBe(true);
    directory.sync('n1', 0, [['s\u0000a', 2]]); // a claim that does not say keeps the tier
    expect(directory.lookup('s\u0000a')?.onDisk).toBe(true);
    const moved = new BucketDirectory(7);
    moved.install(3, directory.entries());
    expect(moved.lookup('s\u0000a')).toMatchObject({ node: 'n1', onDisk: true, confirmed: true });
    moved.sync('n1', 0, [['s\u0000a', 2]]);
    moved.setTier('s\u0000a', 'n1', 2, false);
    expect(moved.entries()).toEqual([['s\u0000a', 'n1', 0, 2]]);
    moved.sync('n1', 0, [['s\u0000a', 2, 1]]);
    expect(moved.lookup('s\u0000a')?.onDisk).toBe(true);
  });

  it('a rebuild returns the reported copies that lost to a newer location on another node', () => {
    const directory = new BucketDirectory(7);
    directory.register('s\u0000again', 'n2', 0, 3 * 2 ** 24); // placed again after n1 was lost
    const stale = directory.install(4, [
      ['s\u0000again', 'n1', 0, 1], // n1's copy from before its crash
      ['s\u0000kept', 'n1', 0, 1],
      ['s\u0000twice', 'n3', 1, 2],
      ['s\u0000twice', 'n1', 0, 5],
    ]);
    expect(stale).toEqual([
      ['s\u0000again', 'n1', 0, 1],
      ['s\u0000twice', 'n3', 1, 2],
    ]);
    expect(directory.lookup('s\u0000twice')?.node).toBe('n1');
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

describe('BucketDirectory placements', () => {
  it('keeps an unconfirmed placement through a sync that does not list it, until it is confirmed or expires', () => {
    const directory = new BucketDirectory(0);
    directory.install(1, []);
    directory.register('T\u0000a', 'n2', 0, 1, false, 100);
    // n2's sync was taken before its activation: it must not erase the placement.
    directory.sync('n2', 0, []);
    expect(directory.lookup('T\u0000a')).toMatchObject({ node: 'n2', confirmed: false });
    expect(directory.entries()).toEqual([['T\u0000a', 'n2', 0, 1, 1]]);
    expect(directory.expireUnconfirmed(100)).toBe(0);
    directory.register('T\u0000a', 'n2', 0, 1);
    expect(directory.lookup('T\u0000a')).toMatchObject({ confirmed: true });
    expect(directory.expireUnconfirmed(1_000_000)).toBe(0);
    directory.sync('n2', 0, []);
    expect(directory.lookup('T\u0000a')).toBeUndefined();
  });

  it('drops a placement never confirmed once it is old enough, and carries the mark through a handoff', () => {
    const directory = new BucketDirectory(0);
    directory.install(1, []);
    directory.register('T\u0000b', 'n3', 1, 1, false, 50);
    const handedOff = new BucketDirectory(0);
    handedOff.install(2, directory.entries(), 500);
    expect(handedOff.lookup('T\u0000b')).toMatchObject({ confirmed: false });
    expect(handedOff.expireUnconfirmed(400)).toBe(0);
    expect(handedOff.expireUnconfirmed(501)).toBe(1);
    expect(handedOff.lookup('T\u0000b')).toBeUndefined();
  });
});
