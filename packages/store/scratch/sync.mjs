import { open, getLastVersion } from 'lmdb';
import { rmSync } from 'node:fs';
import { encode } from '@wadi/core';
import { encodeRecord } from '../dist/internal/record-codec.js';
import { recordKey, indexKey } from '../dist/internal/lmdb-keys.js';
rmSync('/tmp/wadi-store-exp/sync', { recursive: true, force: true });
const env = open({ path: '/tmp/wadi-store-exp/sync', maxDbs: 8 });
const s = env.openDB({ name: 's', encoding: 'binary', useVersions: true });
const f = env.openDB({ name: 'f', encoding: 'binary', useVersions: true });
const ix = env.openDB({ name: 'i', encoding: 'binary' });
const raw = env.openDB({ name: 'raw', encoding: 'binary' });
const state = new Uint8Array(1024).fill(0x5a);
const bytes = Buffer.from(state);
let serial = 0;
async function syncBatch() {
  const recs = [];
  for (let i = 0; i < 1000; i++, serial++) recs.push({ type: 'cart', id: `s-${serial}`, bucket: serial % 1024, version: 1, epoch: 1, state, updatedAt: Date.now() });
  env.transactionSync(() => {
    for (const r of recs) {
      const key = recordKey(r.type, r.id);
      const cur = s.getBinaryFast(key);
      const fe = f.getBinaryFast(r.bucket);
      const value = encodeRecord(r);
      s.put(key, value, 7);
      ix.put(indexKey(r.bucket, r.type, r.id), encode([r.version, r.epoch, r.updatedAt, 1024]));
    }
  });
  await s.flushed;
}
async function rawBatch() {
  let last; for (let i = 0; i < 1000; i++) last = raw.put(['cart', `raw-${serial++}`], bytes);
  await last; await raw.flushed;
}
for (let r = 0; r < 5; r++) {
  for (const [name, fn] of [['sync', syncBatch], ['raw', rawBatch]]) {
    const c = process.cpuUsage(); const t = performance.now();
    for (let b = 0; b < 20; b++) await fn();
    const u = process.cpuUsage(c);
    process.stdout.write(`${name} wall ${((performance.now() - t) * 1000 / 20000).toFixed(1)} cpu ${((u.user + u.system) / 20000).toFixed(1)}  `);
  }
  console.log();
}
await env.close();
