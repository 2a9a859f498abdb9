import { LmdbTier } from '../dist/index.js';
import { rmSync } from 'node:fs';
const path = '/tmp/wadi-store-exp/db9';
rmSync(path, { recursive: true, force: true });
const t = new LmdbTier({ path });
for (const [fe, v, e] of [[0, 0, 0], [1, 1, 1], [0, 1, 1]]) {
  const b = Math.floor(Math.random() * 1e6);
  const a = t.fence(b, fe);
  const w = t.store({ type: 'race', id: 'x' + b, bucket: b, version: v, epoch: e, state: new Uint8Array([1]), updatedAt: 1 });
  console.log(fe, v, e, await Promise.allSettled([a, w]), t.loadSync('race', 'x' + b));
}
await t.close();
