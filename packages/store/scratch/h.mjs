import { encode, decode } from '@wadi/core';
const st = new Uint8Array([1,2,3,4]);
const e = encode([1, 't', 'i', 3, 4, 5, 6, st]);
console.log(e.length, Buffer.from(e).toString('hex'));
const d = decode(e);
console.log(d, d[7].constructor.name, d[7].buffer === e.buffer, d[7].byteOffset);
const b = Buffer.from([9,9]);
const e2 = encode([b]); console.log(Buffer.from(e2).toString('hex'), decode(e2)[0].constructor.name);
