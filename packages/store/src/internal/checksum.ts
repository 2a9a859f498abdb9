/**
 * CRC-32 (the zlib polynomial) of stored bytes, so a tier notices bytes that changed under it
 * (disk, a bad copy, a hand edit) instead of handing them to a session. Node >= 20.15 computes it
 * natively (`zlib.crc32`); older Node 20 releases use the table below.
 */
import * as zlib from 'node:zlib';

type Crc32 = (data: Uint8Array) => number;

const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

let table: Uint32Array | undefined;

function crc32Table(): Uint32Array {
  if (table !== undefined) return table;
  table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

function portableCrc32(data: Uint8Array): number {
  const t = crc32Table();
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = t[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** Unsigned CRC-32 of `data`. */
export const crc32: Crc32 = native === undefined ? portableCrc32 : (data) => native(data);

/** Exposed for the test that checks both implementations agree. */
export const crc32Portable: Crc32 = portableCrc32;
