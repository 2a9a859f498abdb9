/** Evicters and the rate limiter: pure, so examples plus properties against simple models. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdleEvicter, LruEvicter, MemoryEvicter, RateLimiter, anyOf, type Evicter } from '../src/index.js';

type Step = { kind: 'touch'; key: number; bytes: number; dt: number } | { kind: 'remove'; key: number };

const steps = fc.array(
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('touch' as const), key: fc.nat(20), bytes: fc.nat(1000), dt: fc.nat(50) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), key: fc.nat(20) }) },
  ),
  { maxLength: 200 },
);

/** Replays steps into an evicter and a model: key -> last touch (insertion order = recency). */
function replay(evicter: Evicter, script: Step[]): { now: number; model: Map<string, { at: number; bytes: number }> } {
  let now = 0;
  const model = new Map<string, { at: number; bytes: number }>();
  for (const step of script) {
    const key = `k${step.key}`;
    if (step.kind === 'touch') {
      now += step.dt;
      evicter.touched(key, step.bytes, now);
      model.delete(key);
      model.set(key, { at: now, bytes: step.bytes });
    } else {
      evicter.removed(key);
      model.delete(key);
    }
  }
  return { now, model };
}

/** Removes what `due` returned, as a caller that honours it does. */
function honour(evicter: Evicter, model: Map<string, unknown>, keys: string[]): void {
  for (const key of keys) {
    evicter.removed(key);
    model.delete(key);
  }
}

describe('IdleEvicter', () => {
  it('returns the keys idle for idleMs or more, oldest first, up to the limit', () => {
    const evicter = new IdleEvicter({ idleMs: 100 });
    evicter.touched('a', 1, 0);
    evicter.touched('b', 1, 50);
    evicter.touched('c', 1, 120);
    evicter.touched('a', 1, 130);
    expect(evicter.due(200, 10)).toEqual(['b']);
    expect(evicter.due(250, 10)).toEqual(['b', 'c', 'a']);
    expect(evicter.due(250, 2)).toEqual(['b', 'c']);
    evicter.removed('b');
    expect(evicter.due(250, 10)).toEqual(['c', 'a']);
  });

  it('property: due(now, ∞) is exactly the idle keys, oldest first', () => {
    fc.assert(
      fc.property(steps, fc.nat(300), fc.nat(200), (script, idleMs, later) => {
        const evicter = new IdleEvicter({ idleMs });
        const { now, model } = replay(evicter, script);
        const at = now + later;
        const expected = [...model].filter(([, touch]) => touch.at + idleMs <= at).map(([key]) => key);
        expect(evicter.due(at, Infinity)).toEqual(expected);
      }),
    );
  });

  it('never judges a key older than it is when the clock steps back', () => {
    const evicter = new IdleEvicter({ idleMs: 100 });
    evicter.touched('a', 1, 1000);
    evicter.touched('b', 1, 500);
    expect(evicter.due(1050, 10)).toEqual([]);
    expect(evicter.due(1100, 10)).toEqual(['a', 'b']);
  });
});

describe('LruEvicter', () => {
  it('returns the least recently touched keys beyond maxCount', () => {
    const evicter = new LruEvicter({ maxCount: 2 });
    for (const key of ['a', 'b', 'c', 'd']) evicter.touched(key, 1, 0);
    evicter.touched('a', 1, 1);
    expect(evicter.due(1, 10)).toEqual(['b', 'c']);
    expect(evicter.due(1, 1)).toEqual(['b']);
  });

  it('property: after due() is honoured, at most maxCount keys remain, and they are the most recent', () => {
    fc.assert(
      fc.property(steps, fc.nat(10), (script, maxCount) => {
        const evicter = new LruEvicter({ maxCount });
        const { now, model } = replay(evicter, script);
        const keys = [...model.keys()];
        const due = evicter.due(now, Infinity);
        expect(due).toEqual(keys.slice(0, Math.max(0, keys.length - maxCount)));
        honour(evicter, model, due);
        expect(model.size).toBeLessThanOrEqual(maxCount);
        expect(evicter.due(now, Infinity)).toEqual([]);
      }),
    );
  });
});

describe('MemoryEvicter', () => {
  it('returns the oldest keys until the rest fits in maxBytes', () => {
    const evicter = new MemoryEvicter({ maxBytes: 100 });
    evicter.touched('a', 60, 0);
    evicter.touched('b', 30, 1);
    evicter.touched('c', 50, 2);
    expect(evicter.due(3, 10)).toEqual(['a']);
    evicter.touched('b', 90, 4);
    expect(evicter.due(5, 10)).toEqual(['a', 'c']);
  });

  it('property: after due() is honoured, the bytes held are at most maxBytes, evicting oldest first', () => {
    fc.assert(
      fc.property(steps, fc.nat(3000), (script, maxBytes) => {
        const evicter = new MemoryEvicter({ maxBytes });
        const { now, model } = replay(evicter, script);
        const due = evicter.due(now, Infinity);
        expect(due).toEqual([...model.keys()].slice(0, due.length));
        honour(evicter, model, due);
        expect([...model.values()].reduce((sum, t) => sum + t.bytes, 0)).toBeLessThanOrEqual(maxBytes);
      }),
    );
  });
});

describe('anyOf', () => {
  it('a key is due when any evicter says so; oldest first, once each, up to the limit', () => {
    const evicter = anyOf(new IdleEvicter({ idleMs: 100 }), new LruEvicter({ maxCount: 2 }));
    evicter.touched('old', 1, 0);
    evicter.touched('x', 1, 150);
    evicter.touched('y', 1, 160);
    evicter.touched('z', 1, 170);
    // 'old' is idle and also beyond the count; 'x' is beyond the count.
    expect(evicter.due(180, 10)).toEqual(['old', 'x']);
    expect(evicter.due(180, 1)).toEqual(['old']);
    evicter.removed('old');
    expect(evicter.due(180, 10)).toEqual(['x']);
  });

  it('property: the union of what each evicter returns, in recency order, without duplicates', () => {
    fc.assert(
      fc.property(steps, fc.nat(300), fc.nat(10), fc.nat(3000), fc.integer({ min: 1, max: 30 }), (script, idleMs, maxCount, maxBytes, limit) => {
        const parts = (): Evicter[] => [new IdleEvicter({ idleMs }), new LruEvicter({ maxCount }), new MemoryEvicter({ maxBytes })];
        const singles = parts();
        const combined = anyOf(...parts());
        const { now, model } = replay(combined, script);
        for (const single of singles) replay(single, script);
        const union = new Set(singles.flatMap((single) => single.due(now, Infinity)));
        const expected = [...model.keys()].filter((key) => union.has(key)).slice(0, limit);
        expect(combined.due(now, limit)).toEqual(expected);
      }),
    );
  });
});

describe('RateLimiter', () => {
  it('starts full, grants whole tokens, refills at perSecond up to burst', () => {
    const limiter = new RateLimiter({ perSecond: 10, burst: 5 });
    expect(limiter.take(0, 3)).toBe(3);
    expect(limiter.take(0, 3)).toBe(2);
    expect(limiter.take(0, 1)).toBe(0);
    expect(limiter.take(150, 5)).toBe(1);
    expect(limiter.available(10_000)).toBe(5);
  });

  it('property: over any run, grants never exceed burst + perSecond × elapsed', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1000 }),
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.record({ dt: fc.nat(500), wanted: fc.nat(40) }), { maxLength: 100 }),
        (perSecond, burst, calls) => {
          const limiter = new RateLimiter({ perSecond, burst });
          let now = 0;
          let granted = 0;
          for (const call of calls) {
            now += call.dt;
            const got = limiter.take(now, call.wanted);
            expect(got).toBeGreaterThanOrEqual(0);
            expect(got).toBeLessThanOrEqual(call.wanted);
            granted += got;
          }
          expect(granted).toBeLessThanOrEqual(burst + (perSecond * now) / 1000 + 1e-9);
        },
      ),
    );
  });

  it('refuses nonsense options', () => {
    expect(() => new RateLimiter({ perSecond: -1, burst: 1 })).toThrow(/perSecond/);
    expect(() => new RateLimiter({ perSecond: 1, burst: 0 })).toThrow(/burst/);
    expect(() => new LruEvicter({ maxCount: -1 })).toThrow(/maxCount/);
  });
});
