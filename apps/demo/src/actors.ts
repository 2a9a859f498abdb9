/**
 * The demo's session actors. Ids follow wadi's group rule: `alice/cart` and `alice/profile` share
 * group `alice`, so one user's sessions live in one bucket, on one worker.
 */
import { defineActor } from 'wadi';

export interface CartState {
  items: Map<string, number>;
  updates: number;
}

export const cart = defineActor('cart', {
  state: (): CartState => ({ items: new Map(), updates: 0 }),
  handlers: {
    add(state, sku: string, quantity: number) {
      if (!Number.isInteger(quantity) || quantity < 1) {
        throw Object.assign(new RangeError(`quantity must be a positive integer, got ${quantity}`), { code: 'BAD_QUANTITY' });
      }
      state.items.set(sku, (state.items.get(sku) ?? 0) + quantity);
      state.updates++;
      return state.items.get(sku)!;
    },
    remove(state, sku: string) {
      const had = state.items.delete(sku);
      if (had) state.updates++;
      return had;
    },
    view(state) {
      return { items: Object.fromEntries(state.items), updates: state.updates };
    },
    /** Changes the cart, then fails: the turn is discarded and the cart is as it was. */
    addThenFail(state, sku: string) {
      state.items.set(sku, 999);
      throw Object.assign(new Error('payment service declined'), { code: 'DECLINED' });
    },
  },
});

export const profile = defineActor('profile', {
  state: () => ({ name: '', visits: 0, lastSeen: new Date(0) }),
  handlers: {
    visit(state, name: string) {
      state.name = name;
      state.visits++;
      state.lastSeen = new Date();
      return state.visits;
    },
    get(state) {
      return { ...state };
    },
  },
});

/** Stateless: runs on the pool, so CPU-heavy work never blocks a worker that hosts sessions. */
export const pricing = defineActor('pricing', {
  stateless: true,
  handlers: {
    quote(_state: undefined, items: Record<string, number>) {
      let cents = 0;
      for (const [sku, quantity] of Object.entries(items)) cents += quantity * (100 + (sku.length * 37) % 900);
      return cents;
    },
  },
});
