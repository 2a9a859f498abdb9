import { open, getLastVersion } from 'lmdb';
import { rmSync } from 'node:fs';
import { encodeRecords, decodeRecord } from '../dist/internal/record-codec.js';
import { recordKey, indexKey } from '../dist/internal/lmdb-keys.js';
rmSync('/tmp/wadi-store-exp/txn2', { recursive: true, force: true });
const env = open({ path: '/tmp/wadi-store-exp/txn2', maxDbs: 8 });
const s = env.openDB({ name: 's', encoding: 'binary', useVersions: true });
const f = env.openDB({ name: 'f', encoding: 'binary', useVersions: true });
const ix = env.openDB({ name: 'i', encoding: 'binary' });
const raw = env.openDB({ name: 'raw', encoding: 'binary' });
const state = new Uint8Array(1024).fill(0x5a);
const bytes = Buffer.from(state);
const E = Buffer.alloc(0);
let serial = 0;
function batch() { const recs = []; for (let i = 0; i < 1000; i++, serial++) recs.push({ type: 'cart', id: `s-${serial}`, bucket: serial % 1024, version: 1, epoch: 1, state, updatedAt: Date.now() }); return recs; }
function body(recs, values) {
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i];
    const key = recordKey(r.type, r.id);
    const cur = s.getBinaryFast(key);
    if (cur !== undefined) decodeRecord(cur, r.type, r.id, false);
    const fe = f.getBinaryFast(r.bucket);
    s.put(key, values[i], 7);
    ix.put(indexKey(r.bucket, r.type, r.id), E);
  }
}
async function asyncTxn() { const recs = batch(); const values = encodeRecords(recs); await env.transaction(() => body(recs, values)); await s.flushed; }
async function syncTxn() { const recs = batch(); const values = encodeRecords(recs); env.transactionSync(() => body(recs, values), 0x10002); await s.flushed; }
async function rawBatch() { let last; for (let i = 0; i < 1000; i++) last = raw.put(['cart', `raw-${serial++}`], bytes); await last; await raw.flushed; }
for (let r = 0; r < 4; r++) {
  for (const [name, fn] of [['async', asyncTxn], ['sync', syncTxn], ['raw', rawBatch]]) {
    const c = process.cpuUsage(); const t = performance.now();
    for (let b = 0; b < 20; b++) await fn();
    const u = process.cpuUsage(c);
    process.stdout.write(`${name} wall ${((performance.now() - t) * 1000 / 20000).toFixed(1)} cpu ${((u.user + u.system) / 20000).toFixed(1)}  `);
  }
  console.log();
}
await env.close();
