/**
 * The package `wadi` is the user-facing entry: it re-exports the public API, and the repository
 * root depends on it, so a script at the root can `import { ... } from 'wadi'`.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import * as wadi from 'wadi';
import { defineActor, startNode, type Ref } from 'wadi';
import { cart } from '@wadi/demo/actors';

describe('the wadi package', () => {
  it('re-exports defineActor, startNode and the typed errors', () => {
    for (const name of ['defineActor', 'startNode', 'Overloaded', 'Timeout', 'Unavailable', 'Stopped', 'UnknownActorType', 'UnknownMethod', 'NotSerializable', 'httpSessions', 'HTTP_ACTORS']) {
      expect(wadi, name).toHaveProperty(name);
    }
  });

  it('types refs from handler signatures', () => {
    const counter = defineActor('typed-counter', {
      state: () => ({ n: 0 }),
      handlers: {
        add(state, x: number) {
          state.n += x;
          return state.n;
        },
        async label(state, prefix: string) {
          return `${prefix}${state.n}`;
        },
      },
    });
    type CounterRef = Ref<typeof counter.handlers>;
    expectTypeOf<CounterRef['add']>().parameters.toEqualTypeOf<[x: number]>();
    expectTypeOf<CounterRef['add']>().returns.toEqualTypeOf<Promise<number>>();
    expectTypeOf<CounterRef['label']>().returns.toEqualTypeOf<Promise<string>>();
    expectTypeOf<CounterRef['tell']['add']>().returns.toEqualTypeOf<void>();
  });

  it('runs a node from the root package, calling the demo cart through a typed ref', async () => {
    const node = await startNode({ workers: 2, actors: [new URL('../../apps/demo/dist/actors.js', import.meta.url)] });
    try {
      const ref = node.ref(cart, 'carol/cart');
      expectTypeOf(ref.add).returns.toEqualTypeOf<Promise<number>>();
      expect(await ref.add('apple', 2)).toBe(2);
      expect(await ref.add('apple', 1)).toBe(3);
      await expect(ref.add('apple', 0)).rejects.toMatchObject({ name: 'RangeError', code: 'BAD_QUANTITY' });
      expect(await ref.view()).toEqual({ items: { apple: 3 }, updates: 2 });
    } finally {
      await node.stop();
    }
  });
});
