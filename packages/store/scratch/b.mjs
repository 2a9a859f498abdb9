import { open, asBinary } from 'lmdb';
import { rmSync } from 'node:fs';
const path = '/tmp/wadi-store-exp/db2';
rmSync(path, { recursive: true, force: true });
const env = open({ path });
const db = env.openDB({ name: 's', encoding: 'binary' });
const idx = env.openDB({ name: 'i', encoding: 'binary' });
const val = Buffer.alloc(1100, 7);
// semantics: within transaction, does get see putSync?
await env.transaction(() => {
  db.putSync('a', Buffer.from([1]));
  console.log('in txn sees', db.get('a'));
});
console.log('after', db.get('a'));
const N = 1000;
async function raw(round) {
  let last;
  for (let i = 0; i < N; i++) last = db.put(['t', 'r' + round + '-' + i], val);
  await last; await db.flushed;
}
async function txn(round) {
  await env.transaction(() => {
    for (let i = 0; i < N; i++) {
      const k = ['t', 'x' + round + '-' + i];
      const old = db.getBinaryFast(k);
      db.putSync(k, val);
      idx.putSync([i % 1024, 't', 'x' + round + '-' + i], Buffer.from([1,2,3,4,5,6,7,8]));
    }
  });
  await db.flushed;
}
for (const [name, f] of [['raw', raw], ['txn', txn], ['raw', raw], ['txn', txn]]) {
  const t = performance.now(); let r = 0;
  for (; r < 50; r++) await f(name + r + Math.random());
  const ms = performance.now() - t;
  console.log(name, Math.round(50 * N / ms * 1000), '/s');
}
await env.close();
