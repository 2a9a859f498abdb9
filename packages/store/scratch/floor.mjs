const scramble = (n) => ((Math.imul(n, 0x9e3779b1) >>> 0).toString(36));
import { open } from 'lmdb';
import { rmSync } from 'node:fs';
import { LmdbTier } from '../dist/index.js';
import { encodeRecords } from '../dist/internal/record-codec.js';
import { recordKey, indexKey } from '../dist/internal/lmdb-keys.js';
rmSync('/tmp/wadi-store-exp/floor', { recursive: true, force: true });
const env = open({ path: '/tmp/wadi-store-exp/floor/raw', maxDbs: 8 });
const s = env.openDB({ name: 's', encoding: 'binary' });
const ix = env.openDB({ name: 'i', encoding: 'binary' });
const s2 = env.openDB({ name: 's2', encoding: 'binary', useVersions: true });
const f2 = env.openDB({ name: 'f2', encoding: 'binary', useVersions: true });
const tier = new LmdbTier({ path: '/tmp/wadi-store-exp/floor/tier' });
const state = new Uint8Array(1024).fill(0x5a);
const bytes = Buffer.from(state);
const E = Buffer.alloc(0);
let serial = 0;
const B = +(process.argv[2] || 1000);
function recs() { const out = []; for (let i = 0; i < B; i++, serial++) out.push({ type: 'cart', id: `s-${scramble(serial)}`, bucket: serial % 1024, version: 1, epoch: 1, state, updatedAt: Date.now() }); return out; }
const variants = {
  raw: async () => { let last; for (let i = 0; i < B; i++) last = s.put(["cart", `raw-${scramble(serial++)}`], bytes); await last; await s.flushed; },
  rawIdx: async () => { let last; for (let i = 0; i < B; i++, serial++) { last = s.put(['cart', `ri-${serial}`], bytes); ix.put([serial % 1024, 'cart', `ri-${serial}`], E); } await last; await s.flushed; },
  rawEnc: async () => { const r = recs(); const v = encodeRecords(r); let last; for (let i = 0; i < B; i++) { last = s.put(recordKey('cart', r[i].id), v[i]); ix.put(indexKey(r[i].bucket, 'cart', r[i].id), E); } await last; await s.flushed; },
  tier: async () => { await tier.storeMany(recs()); },
  txnCb: async () => {
    const r = recs(); const v = encodeRecords(r);
    await env.transaction(() => {
      for (let i = 0; i < B; i++) {
        const k = recordKey('cart', r[i].id);
        const cur = s2.getBinaryFast(k);
        const fe = f2.getBinaryFast(r[i].bucket);
        s2.put(k, v[i], 5);
        ix.put(indexKey(r[i].bucket, 'cart', r[i].id), E);
      }
    });
    await s.flushed;
  },
  syncTxn: async () => {
    const r = recs(); const v = encodeRecords(r);
    env.transactionSync(() => {
      for (let i = 0; i < B; i++) {
        const k = recordKey('cart', r[i].id);
        const cur = s2.getBinaryFast(k);
        const fe = f2.getBinaryFast(r[i].bucket);
        s2.put(k, v[i], 5);
        ix.put(indexKey(r[i].bucket, 'cart', r[i].id), E);
      }
    }, 0x10002);
    await s.flushed;
  },
};
const best = {};
for (let r = 0; r < 8; r++) {
  for (const [name, fn] of Object.entries(variants)) {
    const c = process.cpuUsage(); const t = performance.now();
    for (let b = 0; b < 10000 / B; b++) await fn();
    const u = process.cpuUsage(c);
    const cpu = (u.user + u.system) / 10000, wall = (performance.now() - t) * 1000 / 10000;
    best[name] = { cpu: Math.min(best[name]?.cpu ?? 1e9, cpu), wall: Math.min(best[name]?.wall ?? 1e9, wall) };
  }
}
for (const [k, v] of Object.entries(best)) console.log(k.padEnd(8), 'min wall', v.wall.toFixed(1), 'min cpu', v.cpu.toFixed(1));
await tier.close(); await env.close();
