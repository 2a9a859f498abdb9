import { open } from 'lmdb';
import { rmSync } from 'node:fs';
import { recordKey } from '../dist/internal/lmdb-keys.js';
rmSync('/tmp/wadi-store-exp/idx', { recursive: true, force: true });
const env = open({ path: '/tmp/wadi-store-exp/idx', maxDbs: 8 });
const s = env.openDB({ name: 's', encoding: 'binary', useVersions: true });
const ix = env.openDB({ name: 'i', encoding: 'binary' });
const state = Buffer.alloc(1060, 0x5a);
const E = Buffer.alloc(0);
let serial = 0;
const variants = {
  recordOnly: (k, b, id) => s.put(k, state, 7),
  randomIndex: (k, b, id) => { s.put(k, state, 7); return ix.put([b, 'cart', id], E); },
  seqIndex: (k, b, id) => { s.put(k, state, 7); return ix.put([0, 'cart', id], E); },
  raw: (k, b, id) => s.put(k, state),
};
for (let r = 0; r < 3; r++) {
  for (const [name, fn] of Object.entries(variants)) {
    const c = process.cpuUsage(); const t = performance.now();
    for (let b = 0; b < 20; b++) { let last; for (let i = 0; i < 1000; i++, serial++) { const id = `${name}-${serial}`; last = fn(recordKey('cart', id), serial % 1024, id); } await last; await s.flushed; }
    const u = process.cpuUsage(c);
    process.stdout.write(`${name} ${((performance.now() - t) * 1000 / 20000).toFixed(1)}/${((u.user + u.system) / 20000).toFixed(1)}  `);
  }
  console.log();
}
await env.close();
