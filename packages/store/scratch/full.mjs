import { LmdbTier } from '../dist/index.js';
process.on('unhandledRejection', (e) => { console.log('UNHANDLED', e?.code, e?.message?.slice(0, 100)); });
const tier = new LmdbTier({ path: process.argv[2] });
const state = new Uint8Array(4096).fill(7);
for (let batch = 0; batch < 40; batch++) {
  const records = Array.from({ length: 32 }, (_, i) => ({ type: 'cart', id: `b${batch}-${i}`, bucket: i % 8, version: 1, epoch: 1, state, updatedAt: 1 }));
  const outcomes = await tier.storeMany(records);
  const summary = outcomes.map((o) => o === undefined ? 'ok' : o.code ?? o.message);
  console.log(batch, [...new Set(summary)].join(','));
}
