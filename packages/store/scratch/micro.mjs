import { open } from 'lmdb';
import { rmSync } from 'node:fs';
import { encode } from '@wadi/core';
import { encodeRecord } from '../dist/internal/record-codec.js';
import { recordKey, indexKey } from '../dist/internal/lmdb-keys.js';
rmSync('/tmp/wadi-store-exp/micro', { recursive: true, force: true });
const env = open({ path: '/tmp/wadi-store-exp/micro', maxDbs: 8 });
const s = env.openDB({ name: 's', encoding: 'binary', useVersions: true });
const f = env.openDB({ name: 'f', encoding: 'binary', useVersions: true });
const ix = env.openDB({ name: 'i', encoding: 'binary' });
const state = new Uint8Array(1024).fill(0x5a);
const N = 20000;
let serial = 0;
function time(label, fn) {
  const c = process.cpuUsage(); const t = performance.now();
  fn();
  const u = process.cpuUsage(c);
  console.log(label.padEnd(28), ((performance.now() - t) * 1000 / N).toFixed(2), 'us wall', ((u.user + u.system) / N).toFixed(2), 'us cpu');
}
async function timeAsync(label, fn) {
  const c = process.cpuUsage(); const t = performance.now();
  await fn();
  const u = process.cpuUsage(c);
  console.log(label.padEnd(28), ((performance.now() - t) * 1000 / N).toFixed(2), 'us wall', ((u.user + u.system) / N).toFixed(2), 'us cpu');
}
const recs = Array.from({ length: N }, (_, i) => ({ type: 'cart', id: `s-${i}`, bucket: i % 1024, version: 1, epoch: 1, state, updatedAt: Date.now() }));
for (let round = 0; round < 2; round++) {
  console.log('round', round);
  time('records alloc', () => { for (let i = 0; i < N; i++) recs[i] = { type: 'cart', id: `s-${serial++}`, bucket: i % 1024, version: 1, epoch: 1, state, updatedAt: Date.now() }; });
  time('recordKey+getBinaryFast', () => { for (const r of recs) s.getBinaryFast(recordKey(r.type, r.id)); });
  time('fence getBinaryFast', () => { for (const r of recs) f.getBinaryFast(r.bucket); });
  let vals;
  time('encodeRecord', () => { vals = recs.map((r) => encodeRecord(r)); });
  time('encode meta', () => { for (const r of recs) encode([r.version, r.epoch, r.updatedAt, r.state.byteLength]); });
  time('indexKey', () => { for (const r of recs) indexKey(r.bucket, r.type, r.id); });
  await timeAsync('raw put+flush', async () => { let last; for (let i = 0; i < N; i++) last = s.put(recordKey('raw', `r${serial++}`), Buffer.from(state)); await last; await s.flushed; });
  await timeAsync('2 puts+flush', async () => { let last; for (let i = 0; i < N; i++) { const id = `r${serial++}`; last = s.put(recordKey('raw', id), Buffer.from(state)); ix.put(indexKey(1, 'raw', id), Buffer.from(state.subarray(0, 20))); } await last; await s.flushed; });
  await timeAsync('ifVersion(put)+flush', async () => { const ps = []; for (let i = 0; i < N; i++) { const k = recordKey('raw', `r${serial++}`); ps.push(s.ifVersion(k, null, () => { s.put(k, Buffer.from(state), 5); })); } await Promise.all(ps); await s.flushed; });
  await timeAsync('nested ifVersion+2puts+flush', async () => { const ps = []; const o = f.ifVersion(-1, null, () => { for (let i = 0; i < N; i++) { const id = `r${serial++}`; const k = recordKey('raw', id); ps.push(s.ifVersion(k, null, () => { s.put(k, Buffer.from(state), 5); ix.put(indexKey(1, 'raw', id), Buffer.from(state.subarray(0, 20))); })); } }); await Promise.all([o, ...ps]); await s.flushed; });
}
await env.close();
