/**
 * Two copies of one session meet at its bucket's owner (docs/cluster.md, "Two activations:
 * reported, and the newer wins"): a claim older than the location the directory holds on another
 * node is answered `stale` (so its node drops that copy), and a live one (in memory, not parked
 * on disk) is counted and logged, never hidden.
 */
import { Kind, activationKey, type TellEnvelope } from '@wadi/core';
import { describe, expect, it } from 'vitest';
import { BUCKET_ACTOR, BucketHost } from '../src/index.js';

function owner(): { host: BucketHost; toNode: TellEnvelope[]; logs: string[] } {
  const toNode: TellEnvelope[] = [];
  const logs: string[] = [];
  const host = new BucketHost(0, 1, 4, {
    toWorker: () => undefined,
    toNode: (envelope) => toNode.push(envelope),
    hosted: () => [],
    log: (message) => logs.push(message),
  });
  host.setLayout('n1', 3, ['n1', 'n1', 'n1', 'n1']);
  toNode.length = 0; // the first layout re-announces what this worker hosts (nothing)
  return { host, toNode, logs };
}

const key = (id: string): string => activationKey('Cart', id);
const update = (method: string, subject: unknown, node: string, version?: number): TellEnvelope => [Kind.Tell, BUCKET_ACTOR, '2', method, version === undefined ? [subject, node, 0, 0] : [subject, node, 0, 0, version]];

describe('two copies of one session at its bucket owner', () => {
  it('a sync claiming an active copy older than the one elsewhere: counted, logged, told stale', () => {
    const { host, toNode, logs } = owner();
    host.receive(update('register', key('a'), 'n2', 10));
    host.receive(update('register', key('b'), 'n2', 10));
    // n3 comes back from a partition still holding both: `a` in memory, `b` parked on its disk.
    host.receive(update('sync', [[key('a'), 5], [key('b'), 5, 1]], 'n3'));
    expect(host.duplicates).toBe(1);
    expect(host.stats().duplicateClaims).toBe(1);
    expect(logs.some((line) => line.startsWith('warn:') && line.includes('n3 claims 1 session(s) active'))).toBe(true);
    expect(toNode).toEqual([[Kind.Tell, BUCKET_ACTOR, '2', 'stale', [[key('a'), key('b')], 'n3', 0, 0]]]);
    // The newer copy keeps its entry.
    expect(host.locate(2, key('a'))).toMatchObject({ node: 'n2', version: 10 });
  });

  it('a register older than the entry on another node is told stale too (not counted: it may be a late one of a session that moved on)', () => {
    const { host, toNode } = owner();
    host.receive(update('register', key('a'), 'n2', 10));
    host.receive(update('register', key('a'), 'n4', 3));
    expect(toNode).toEqual([[Kind.Tell, BUCKET_ACTOR, '2', 'stale', [[key('a')], 'n4', 0, 0]]]);
    expect(host.duplicates).toBe(0);
    expect(host.locate(2, key('a'))).toMatchObject({ node: 'n2', version: 10 });
    // A newer register wins, and is no conflict.
    host.receive(update('register', key('a'), 'n4', 11));
    expect(host.locate(2, key('a'))).toMatchObject({ node: 'n4', version: 11 });
    expect(toNode).toHaveLength(1);
  });
});
