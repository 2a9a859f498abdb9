import { createHook } from 'node:async_hooks';
const stacks = new Map();
createHook({ init(id, type, trigger, resource) { if (type === 'PROMISE') stacks.set(id, new Error().stack); } }).enable();
import { executionAsyncId } from 'node:async_hooks';
const { LmdbTier } = await import('../dist/index.js');
const sym = Object.getOwnPropertySymbols;
process.on('unhandledRejection', (e, p) => {
  const idSym = Object.getOwnPropertySymbols(p).find((s) => s.toString().includes('async_id'));
  const id = idSym ? p[idSym] : undefined;
  console.log('UNHANDLED', e?.message?.slice(0, 60), id, (stacks.get(id) ?? '').split('\n').slice(2, 12).join('\n'));
});
const tier = new LmdbTier({ path: process.argv[2] });
const state = new Uint8Array(4096).fill(7);
for (let batch = 0; batch < 13; batch++) {
  const records = Array.from({ length: 32 }, (_, i) => ({ type: 'cart', id: `b${batch}-${i}`, bucket: i % 8, version: 1, epoch: 1, state, updatedAt: 1 }));
  const outcomes = await tier.storeMany(records);
  console.log(batch, [...new Set(outcomes.map((o) => o === undefined ? 'ok' : o.code ?? o.message))].join(','));
}
