import { open } from 'lmdb';
import { rmSync } from 'node:fs';
rmSync('/tmp/wadi-store-exp/var', { recursive: true, force: true });
const env = open({ path: '/tmp/wadi-store-exp/var' });
const s = env.openDB({ name: 's', encoding: 'binary', useVersions: true });
const f = env.openDB({ name: 'f', encoding: 'binary', useVersions: true });
const ix = env.openDB({ name: 'i', encoding: 'binary' });
const val = Buffer.alloc(1100, 7);
const small = Buffer.alloc(12, 1);
let serial = 0;
const variants = {
  raw: (k, b) => s.put(k, val, 1),
  rawIdx: (k, b) => { ix.put([b, k[0], k[1]], small); return s.put(k, val, 1); },
  inner: (k, b) => s.ifVersion(k, null, () => { s.put(k, val, 1); ix.put([b, k[0], k[1]], small); }),
  nested: (k, b) => { let inner; const o = f.ifVersion(b, null, () => { inner = s.ifVersion(k, null, () => { s.put(k, val, 1); ix.put([b, k[0], k[1]], small); }); }); return Promise.all([o, inner]); },
  putIf: (k, b) => s.put(k, val, 1, null),
};
for (let round = 0; round < 5; round++) {
  for (const [name, fn] of Object.entries(variants)) {
    const t = performance.now();
    for (let batch = 0; batch < 10; batch++) {
      const ps = [];
      for (let i = 0; i < 1000; i++, serial++) ps.push(fn(['cart', 'k' + serial], serial % 1024));
      await Promise.all(ps); await s.flushed;
    }
    console.log(round, name.padEnd(8), Math.round(10000 / (performance.now() - t) * 1000));
  }
}
await env.close();
