import { open } from 'lmdb';
import { rmSync } from 'node:fs';
rmSync('/tmp/wadi-store-exp/blk2', { recursive: true, force: true });
const env = open({ path: '/tmp/wadi-store-exp/blk2', maxDbs: 8 });
const s = env.openDB({ name: 's', encoding: 'binary', useVersions: true });
const f = env.openDB({ name: 'f', encoding: 'binary', useVersions: true });
const E = Buffer.alloc(0);
await f.put(-1, E, 9);
// outer fails (gen exists, expecting absent)
let a, b, c;
const o = f.ifVersion(-1, null, () => {
  a = s.ifVersion('A', null, () => { s.put('A', Buffer.from([1]), 5); });
  b = s.put('B', Buffer.from([2]), 6);
  c = s.ifVersion('C', null, () => { s.put('C', Buffer.from([3]), 7); });
});
console.log('outer', await o, 'a', await a, 'b', await b, 'c', await c);
console.log('A', s.getEntry('A'), 'B', s.getEntry('B'), 'C', s.getEntry('C'));
// outer fails with numeric version condition
const o2 = f.ifVersion(-1, 1234, () => {
  a = s.ifVersion('A2', null, () => { s.put('A2', Buffer.from([1]), 5); });
  b = s.put('B2', Buffer.from([2]), 6);
});
console.log('outer2', await o2, await a, await b, 'A2', s.getEntry('A2'), 'B2', s.getEntry('B2'));
await env.close();
