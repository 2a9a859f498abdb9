import { LmdbTier, StoreStack } from '../dist/index.js';
import { rmSync } from 'node:fs';
rmSync('/tmp/wadi-store-exp/prof2', { recursive: true, force: true });
const disk = new LmdbTier({ path: '/tmp/wadi-store-exp/prof2/tier' });
const stack = new StoreStack([disk]);
const state = new Uint8Array(1024).fill(0x5a);
let serial = 0;
const c = process.cpuUsage(); const t = performance.now();
for (let done = 0; done < 60000; done += 1000) {
  const records = [];
  for (let i = 0; i < 1000; i++, serial++) records.push({ type: 'cart', id: `s-${serial}`, bucket: serial % 1024, version: 1, epoch: 1, state, updatedAt: Date.now() });
  await (process.env.VIA_STACK ? stack.demoteMany(records, null, disk) : disk.storeMany(records));
}
const u = process.cpuUsage(c);
console.log('wall', (performance.now() - t).toFixed(0), 'cpu', ((u.user + u.system) / 1000).toFixed(0));
await disk.close();
