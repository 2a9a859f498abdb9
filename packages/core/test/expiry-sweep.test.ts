import { describe, expect, it } from 'vitest';
import { ExpirySweep } from '../src/index.js';

describe('ExpirySweep', () => {
  it('returns each expired key once, and keeps the others', () => {
    const sweep = new ExpirySweep<string>();
    sweep.set('a', 10);
    sweep.set('b', 20);
    sweep.set('c', 30);
    expect(sweep.due(20, 10).sort()).toEqual(['a', 'b']);
    expect(sweep.due(20, 10)).toEqual([]);
    expect(sweep.size).toBe(1);
    expect(sweep.get('c')).toBe(30);
  });

  it('looks at no more keys per call than the limit, going on where it stopped', () => {
    const sweep = new ExpirySweep<number>();
    for (let i = 0; i < 10; i++) sweep.set(i, i % 2 === 0 ? 0 : 100);
    expect(sweep.due(50, 3)).toEqual([0, 2]);
    expect(sweep.due(50, 3)).toEqual([4]);
    expect(sweep.due(50, 3)).toEqual([6, 8]);
    // A new pass: only the five unexpired keys are left.
    expect(sweep.due(50, 100)).toEqual([]);
    expect(sweep.size).toBe(5);
  });

  it('forgets a key whose expiry is cleared or deleted, and sees keys added mid-pass', () => {
    const sweep = new ExpirySweep<string>();
    sweep.set('a', 0);
    sweep.set('b', 0);
    expect(sweep.due(1, 1)).toEqual(['a']);
    sweep.set('b', undefined);
    sweep.set('c', 0);
    sweep.set('d', 5);
    sweep.delete('d');
    expect(sweep.due(1, 10)).toEqual(['c']);
    expect(sweep.size).toBe(0);
  });
});
