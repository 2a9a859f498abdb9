import { LmdbTier } from '../dist/index.js';
import { open } from 'lmdb';
import { rmSync } from 'node:fs';
rmSync('/tmp/wadi-store-exp/cpu', { recursive: true, force: true });
const disk = new LmdbTier({ path: '/tmp/wadi-store-exp/cpu/tier' });
const env = open({ path: '/tmp/wadi-store-exp/cpu/raw' });
const raw = env.openDB({ name: 'raw', encoding: 'binary' });
const state = new Uint8Array(1024).fill(0x5a);
const bytes = Buffer.from(state);
let serial = 0;
async function fig(n) {
  for (let done = 0; done < n; done += 1000) {
    const records = [];
    for (let i = 0; i < 1000; i++, serial++) records.push({ type: 'cart', id: `s-${serial}`, bucket: serial % 1024, version: 1, epoch: 1, state, updatedAt: Date.now() });
    await disk.storeMany(records);
  }
}
async function base(n) {
  for (let done = 0; done < n; done += 1000) {
    let last; for (let i = 0; i < 1000; i++) last = raw.put(['cart', `raw-${serial++}`], bytes);
    await last; await raw.flushed;
  }
}
function measure(label, c0, t0, n) {
  const c = process.cpuUsage(c0); const ms = performance.now() - t0;
  return `${label}: wall ${(ms * 1000 / n).toFixed(1)}us/rec cpu ${((c.user + c.system) / n).toFixed(1)}us/rec (user ${(c.user / n).toFixed(1)})`;
}
for (let r = 0; r < 4; r++) {
  let c = process.cpuUsage(); let t = performance.now(); await fig(20000); const a = measure('tier', c, t, 20000);
  c = process.cpuUsage(); t = performance.now(); await base(20000); const b = measure('raw ', c, t, 20000);
  console.log(a, '|', b);
}
await disk.close(); await env.close();
