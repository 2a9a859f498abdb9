import { open } from 'lmdb';
import { rmSync } from 'node:fs';
const path = '/tmp/wadi-store-exp/db10';
rmSync(path, { recursive: true, force: true });
const env = open({ path });
const s = env.openDB({ name: 's', encoding: 'binary', useVersions: true });
const f = env.openDB({ name: 'f', encoding: 'binary', useVersions: true });
// case A: fence put queued first in same turn; then nested conditional expecting fence absent
const fp = f.put(7, Buffer.alloc(0), 0, null);
let inner;
const outer = f.ifVersion(7, null, () => { inner = s.ifVersion('k', null, () => { s.put('k', Buffer.from([1]), 5); }); });
console.log('A fence', await fp, 'outer', await outer, 'inner', await inner, s.getEntry('k'));
// case B: outer fails because fence exists (committed earlier)
let inner2;
const outer2 = f.ifVersion(7, null, () => { inner2 = s.ifVersion('k2', null, () => { s.put('k2', Buffer.from([1]), 5); }); });
console.log('B outer', await outer2, 'inner', await inner2, s.getEntry('k2'));
