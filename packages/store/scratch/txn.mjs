import { LmdbTier } from '../dist/index.js';
import { open } from 'lmdb';
import { rmSync } from 'node:fs';
rmSync('/tmp/wadi-store-exp/txn', { recursive: true, force: true });
const disk = new LmdbTier({ path: '/tmp/wadi-store-exp/txn/tier' });
const env = open({ path: '/tmp/wadi-store-exp/txn/tier', maxDbs: 8 });
const state = new Uint8Array(1024).fill(0x5a);
let serial = 0;
for (let r = 0; r < 3; r++) {
  const before = env.getStats().lastTxnId;
  const records = [];
  for (let i = 0; i < 1000; i++, serial++) records.push({ type: 'cart', id: `s-${serial}`, bucket: serial % 1024, version: 1, epoch: 1, state, updatedAt: Date.now() });
  const t = performance.now();
  await disk.storeMany(records);
  const ms = performance.now() - t;
  env.resetReadTxn();
  console.log('txns', env.getStats().lastTxnId - before, 'ms', ms.toFixed(1));
}
await disk.close();
