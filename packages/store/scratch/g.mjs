import { open } from 'lmdb';
import { rmSync } from 'node:fs';
const path = '/tmp/wadi-store-exp/db7';
rmSync(path, { recursive: true, force: true });
const env = open({ path });
const s = env.openDB({ name: 's', encoding: 'binary', useVersions: true });
const f = env.openDB({ name: 'f', encoding: 'binary', useVersions: true });
const ix = env.openDB({ name: 'i', encoding: 'binary' });
// nested semantics
const B = Buffer.from([1]);
let inner;
let outer = f.ifVersion(7, null, () => { inner = s.ifVersion('k', null, () => { s.put('k', B, 11); ix.put([1,'k'], B); }); });
console.log('absent/absent', await outer, await inner, s.getEntry('k'));
outer = f.ifVersion(7, null, () => { inner = s.ifVersion('k', 11, () => { s.put('k', Buffer.from([2]), 12); }); });
console.log('absent/11', await outer, await inner, s.getEntry('k'));
outer = f.ifVersion(7, null, () => { inner = s.ifVersion('k', 11, () => { s.put('k', Buffer.from([3]), 13); }); });
console.log('absent/11 again (should fail inner)', await outer, await inner, s.getEntry('k'));
await f.put(7, Buffer.from([0]), 5);
outer = f.ifVersion(7, null, () => { inner = s.ifVersion('k', 12, () => { s.put('k', Buffer.from([4]), 14); }); });
console.log('fence present, expect fail', await outer, await inner, s.getEntry('k'));
outer = f.ifVersion(7, 5, () => { inner = s.ifVersion('k', 12, () => { s.put('k', Buffer.from([5]), 15); }); });
console.log('fence 5 ok', await outer, await inner, s.getEntry('k'));
const val = Buffer.alloc(1100, 7);
const N = 1000;
async function raw(tag) {
  let last;
  for (let i = 0; i < N; i++) last = s.put(['t', tag + i], val);
  await last; await s.flushed;
}
let stamp = 1;
async function cond(tag) {
  const ps = [];
  for (let i = 0; i < N; i++) {
    const k = ['t', tag + i];
    const old = s.getBinaryFast(k);
    const bucket = i % 1024;
    const fe = f.getBinaryFast(bucket);
    const fv = fe === undefined ? null : 0;
    let p;
    f.ifVersion(bucket, fv, () => { p = s.ifVersion(k, null, () => { s.put(k, val, stamp++); ix.put([bucket, 't', tag + i], val.subarray(0, 20)); }); });
    ps.push(p);
  }
  const r = await Promise.all(ps); await s.flushed;
  if (r.some((x) => !x)) throw new Error('cond failed');
}
for (const [name, fn] of [['raw', raw], ['cond', cond], ['raw', raw], ['cond', cond]]) {
  const t = performance.now(); let r = 0;
  for (; r < 50; r++) await fn(name + r + Math.random());
  const ms = performance.now() - t;
  console.log(name, Math.round(50 * N / ms * 1000), '/s');
}
await env.close();
