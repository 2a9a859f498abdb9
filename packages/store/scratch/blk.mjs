import { open } from 'lmdb';
import { rmSync } from 'node:fs';
rmSync('/tmp/wadi-store-exp/blk', { recursive: true, force: true });
const env = open({ path: '/tmp/wadi-store-exp/blk', maxDbs: 8 });
const s = env.openDB({ name: 's', encoding: 'binary', useVersions: true });
const f = env.openDB({ name: 'f', encoding: 'binary', useVersions: true });
const E = Buffer.alloc(0);
for (const variant of ['put-null', 'put-version', 'block-null']) {
  const key = 'k-' + variant; const gen = -Math.floor(Math.random() * 1e6) - 2;
  const o1 = f.ifVersion(gen, null, () => { f.put(gen, E, 77); });
  let inner;
  const o2 = f.ifVersion(gen, null, () => {
    if (variant === 'put-null') inner = s.put(key, Buffer.from([1]), 5, null);
    else if (variant === 'put-version') inner = s.put(key, Buffer.from([1]), 5);
    else inner = s.ifVersion(key, null, () => { s.put(key, Buffer.from([1]), 5); });
  });
  console.log(variant, await o1, await o2, await inner, s.getEntry(key));
}
await env.close();
