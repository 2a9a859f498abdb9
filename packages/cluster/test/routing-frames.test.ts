/**
 * Session frames from the network are checked before anything acts on them: a malformed one is
 * refused with an error naming what is wrong. (Replica messages other than the results shipped
 * with a write are checked in replica-fences.test.ts and replication.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgument } from '@wadi/core';
import { Frame, parseFrame, type CallFrame } from '../src/index.js';

const call = (): CallFrame => [Frame.Call, 1, 'n1', 7, 0, 'Cart', 'alice/cart', 'add', ['apple', 1], 0, 1, 0, 0, '', '', 0];
/** A sync result delivered by replica n2 (layout 4) for ask 9 of thread 0 of client '~c'. */
const replicated = (): unknown[] => [Frame.ReplicatedResult, 0, 3, 9, { any: 'value' }, null, 'n2', 4, 4, ['n2']];
/** A shipment of one write of 'Cart/a' whose result waits at `callers`. */
const ship = (callers: unknown): unknown[] => [Frame.Replica, 0, 'n1', 7, 0, { t: 'ship', items: [['Cart\u0000a', 1, 7, 3, new Uint8Array([0x80]), callers]] }];

describe('parseFrame', () => {
  it('accepts well-formed frames of every kind', () => {
    expect(parseFrame(call(), 64)).toEqual(call());
    expect(parseFrame([Frame.Result, 0, 7, 1, true, { any: 'value' }, ['Cart\u0000a', 'n2', 1, 1]], 64)[0]).toBe(Frame.Result);
    expect(parseFrame([Frame.Result, -2, 7, 1, false, { name: 'Unavailable', message: 'gone' }, null], 64)[0]).toBe(Frame.Result);
    expect(parseFrame([Frame.Notice, 1, 7, ['Cart\u0000a', '', 0, 3]], 64)[0]).toBe(Frame.Notice);
    expect(parseFrame([Frame.Pending, 1, 7, 'Cart\u0000a', 3], 64)[0]).toBe(Frame.Pending);
    const offer = { t: 'offer', batch: 1, sessions: [['Cart', 'a', 2, new Uint8Array([0x80])]] };
    expect(parseFrame([Frame.Migration, 0, 'n1', 1, offer], 64)[0]).toBe(Frame.Migration);
    expect(parseFrame([Frame.Migration, 0, 'n1', 1, { t: 'handover', batch: 1, calls: [call()] }], 64)[0]).toBe(Frame.Migration);
    expect(parseFrame([Frame.Migration, 0, 'n1', 1, { t: 'fence', batch: 1, sessions: [['Cart\u0000a', 2]] }], 64)[0]).toBe(Frame.Migration);
    expect(parseFrame([Frame.Migration, 0, 'n1', 1, { t: 'fenced', batch: 1, keys: ['Cart\u0000a'] }], 64)[0]).toBe(Frame.Migration);
    expect(parseFrame(replicated(), 64)[0]).toBe(Frame.ReplicatedResult);
    expect(parseFrame(ship([['~c', 3, 0, 9, 'v', ['Cart\u0000a', 'n2', 1, 1], 4, ['n2']]]), 64)[0]).toBe(Frame.Replica);
  });

  const bad: [string, unknown, RegExp][] = [
    ['not an array', { t: 'x' }, /must be an array/],
    ['an unknown kind', [99], /unknown frame kind 99/],
    ['a short call', call().slice(0, 10), /call frame: wrong length/],
    ['a call without a type', Object.assign(call(), { 5: '' }), /type is not a non-empty string/],
    ['a call whose arguments are not a list', Object.assign(call(), { 8: 'x' }), /arguments are not an array/],
    ['a negative hop count', Object.assign(call(), { 9: -1 }), /hops is not a non-negative integer/],
    ['an unknown routing policy', Object.assign(call(), { 13: 'teleport' }), /unknown routing policy/],
    ['a call without a layout epoch', Object.assign(call(), { 15: 'one' }), /epoch is not a non-negative integer/],
    ['a failure without an error', [Frame.Result, 0, 7, 1, false, 'oops', null], /a failure without an error/],
    ['a malformed notice', [Frame.Notice, 0, 7, ['k', 'n', -1, 0]], /notice version/],
    ['a pending report without a number', [Frame.Pending, 0, 7, 'k', 'x'], /pending seq/],
    ['a thread out of range', [Frame.Notice, 99_999, 7, ['k', 'n', 0, 0]], /no thread 99999/],
    ['an offer with a state that is not bytes', [Frame.Migration, 0, 'n1', 0, { t: 'offer', batch: 1, sessions: [['T', 'a', 1, 'x']] }], /not bytes/],
    ['a handover carrying a bad call', [Frame.Migration, 0, 'n1', 0, { t: 'handover', batch: 1, calls: [[Frame.Call, 1]] }], /wrong length/],
    ['a fence with malformed sessions', [Frame.Migration, 0, 'n1', 0, { t: 'fence', batch: 1, sessions: [['k']] }], /fence: malformed sessions/],
    ['an unknown migration message', [Frame.Migration, 0, 'n1', 0, { t: 'steal', batch: 1 }], /unknown migration message 'steal'/],
    ['a replicated result without its targets', Object.assign(replicated(), { 9: [] }), /replicated result frame: malformed targets/],
    ['a replicated result without its replica', Object.assign(replicated(), { 6: 2 }), /no replica node/],
    ['a replicated result with a malformed notice', Object.assign(replicated(), { 5: ['k', 'n', -1, 0] }), /notice version/],
    ['a short replicated result', replicated().slice(0, 9), /replicated result frame: wrong length/],
    ['a shipment whose callers are not a list', ship('~c'), /malformed waiting callers/],
    ['a shipment with a caller of request 0', ship([['~c', 3, 0, 0, 'v', null, 4, ['n2']]]), /malformed waiting callers/],
    ['a shipment with a caller without targets', ship([['~c', 3, 0, 9, 'v', null, 4, []]]), /malformed waiting callers/],
    ['a shipment with a caller whose notice is malformed', ship([['~c', 3, 0, 9, 'v', ['k'], 4, ['n2']]]), /malformed waiting callers/],
    ['an acknowledgement whose callers told are malformed', [Frame.Replica, 0, 'n2', 1, 0, { t: 'ack', items: [], refused: [], told: [['~c', 0]], epoch: 4 }], /malformed told callers/],
    ['an acknowledgement of callers told without its epoch', [Frame.Replica, 0, 'n2', 1, 0, { t: 'ack', items: [], refused: [], told: [['~c', 0, 9]] }], /told callers without an epoch/],
  ];
  for (const [what, value, message] of bad) {
    it(`refuses ${what}`, () => {
      expect(() => parseFrame(value, 64)).toThrow(InvalidArgument);
      expect(() => parseFrame(value, 64)).toThrow(message);
    });
  }
});
