import { LmdbTier, StoreStack } from '../dist/index.js';
import { open } from 'lmdb';
import { rmSync } from 'node:fs';
rmSync('/tmp/wadi-store-exp/prof', { recursive: true, force: true });
const disk = new LmdbTier({ path: '/tmp/wadi-store-exp/prof/tier' });
const env = open({ path: '/tmp/wadi-store-exp/prof/raw' });
const raw = env.openDB({ name: 'raw', encoding: 'binary' });
const stack = new StoreStack([disk]);
const state = new Uint8Array(1024).fill(0x5a);
let serial = 0;
const mode = process.argv[2];
async function fig(n) {
  for (let done = 0; done < n; done += 1000) {
    const records = [];
    for (let i = 0; i < 1000; i++, serial++) records.push({ type: 'cart', id: `s-${serial}`, bucket: serial % 1024, version: 1, epoch: 1, state, updatedAt: Date.now() });
    if (mode === 'tier') await disk.storeMany(records); else await stack.demoteMany(records, null, disk);
  }
}
const bytes = Buffer.from(state);
async function base(n) {
  for (let done = 0; done < n; done += 1000) {
    let last; for (let i = 0; i < 1000; i++) last = raw.put(['cart', `raw-${serial++}`], bytes);
    await last; await raw.flushed;
  }
}
for (let r = 0; r < 4; r++) {
  let t = performance.now(); await fig(20000); const f = 20000 / (performance.now() - t) * 1000;
  t = performance.now(); await base(20000); const b = 20000 / (performance.now() - t) * 1000;
  console.log(Math.round(f), Math.round(b), (f / b).toFixed(2));
}
await disk.close(); await env.close();
