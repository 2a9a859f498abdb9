/**
 * The node-to-node transport over real sockets on 127.0.0.1: connecting, ordering, batching,
 * duplicate and restarted peers, redialling, backpressure and TLS. Waits are polls with a
 * deadline; nothing asserts how fast anything happened.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { Overloaded, Unavailable, decode, decodeMany, encode } from '@wadi/core';
import {
  ClusterTransport,
  type ClusterTransportOptions,
  type PeerIdentity,
  type Rejection,
} from '../src/internal/cluster-transport.js';
import { AcceptorHandshake, DialerHandshake } from '../src/internal/handshake.js';
import { sleep, waitFor } from './helpers.js';

const CLUSTER = 'test-cluster';
const SECRET = 'a long random cluster secret for tests only';

interface Node {
  transport: ClusterTransport;
  ups: PeerIdentity[];
  downs: { peer: PeerIdentity; reason: string }[];
  received: { from: string; incarnation: number; value: unknown }[];
  rejected: Rejection[];
  drains: string[];
  logs: { level: string; message: string }[];
}

const started: ClusterTransport[] = [];
const rawSockets: WebSocket[] = [];

const fakeServers: WebSocketServer[] = [];

afterEach(async () => {
  for (const ws of rawSockets.splice(0)) ws.terminate();
  for (const server of fakeServers.splice(0)) {
    for (const client of server.clients) client.terminate();
    server.close();
  }
  await Promise.all(started.splice(0).map((transport) => transport.close()));
});

function node(id: string, options: Partial<ClusterTransportOptions> = {}): Node {
  const logs: Node['logs'] = [];
  const transport = new ClusterTransport({
    host: '127.0.0.1',
    port: 0,
    clusterName: CLUSTER,
    secret: SECRET,
    self: { id, incarnation: 1 },
    reconnectMinMs: 10,
    reconnectMaxMs: 100,
    pingIntervalMs: 500,
    log: (level, message) => logs.push({ level, message }),
    ...options,
  });
  started.push(transport);
  const result: Node = { transport, ups: [], downs: [], received: [], rejected: [], drains: [], logs };
  transport.on('peer-up', (peer) => result.ups.push(peer));
  transport.on('peer-down', (peer, reason) => result.downs.push({ peer, reason }));
  transport.on('message', (peer, value) => result.received.push({ from: peer.id, incarnation: peer.incarnation, value }));
  transport.on('rejected', (rejection) => result.rejected.push(rejection));
  transport.on('drain', (peer) => result.drains.push(peer.id));
  return result;
}

async function startedNode(id: string, options: Partial<ClusterTransportOptions> = {}): Promise<Node> {
  const result = node(id, options);
  await result.transport.start();
  return result;
}


function valuesFrom(receiver: Node, from: string): unknown[] {
  return receiver.received.filter((entry) => entry.from === from).map((entry) => entry.value);
}

async function connected(...nodes: Node[]): Promise<void> {
  for (const a of nodes) {
    for (const b of nodes) {
      if (a === b) continue;
      await waitFor(`${a.transport.self.id} to see ${b.transport.self.id} up`, () => a.transport.isConnected(b.transport.self.id));
    }
  }
}

/** Sends `count` numbered values from `a` to `b`, a few per tick, and waits until all arrived. */
async function exchange(a: Node, b: Node, count: number, tag: string): Promise<void> {
  const before = valuesFrom(b, a.transport.self.id).length;
  for (let i = 0; i < count; i++) {
    a.transport.send(b.transport.self.id, { tag, i });
    if (i % 7 === 6) await new Promise((resolve) => setImmediate(resolve));
  }
  await waitFor(`${count} values from ${a.transport.self.id} at ${b.transport.self.id}`, () => valuesFrom(b, a.transport.self.id).length >= before + count);
  const got = valuesFrom(b, a.transport.self.id).slice(before);
  expect(got).toEqual(Array.from({ length: count }, (_, i) => ({ tag, i })));
}

describe('ClusterTransport: connecting and exchanging values', () => {
  it('two nodes connect, exchange values both ways in order, and close', async () => {
    const a = await startedNode('a');
    const b = await startedNode('b');
    expect(a.transport.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    expect(a.transport.self).toEqual({ id: 'a', incarnation: 1, url: a.transport.url });

    a.transport.dial(b.transport.url);
    a.transport.dial(b.transport.url); // idempotent
    await connected(a, b);
    expect(a.ups).toEqual([{ id: 'b', incarnation: 1, url: b.transport.url }]);
    expect(b.ups).toEqual([{ id: 'a', incarnation: 1, url: a.transport.url }]);
    expect(a.transport.peers()).toEqual([{ id: 'b', incarnation: 1, url: b.transport.url }]);

    await exchange(a, b, 500, 'a->b');
    await exchange(b, a, 500, 'b->a');
    // Values of every msgpack kind the codec carries arrive as sent.
    const rich = { date: new Date(0), map: new Map([[1, 'one']]), set: new Set(['x']), bytes: new Uint8Array([1, 2, 3]), big: 2n ** 70n, nothing: undefined };
    a.transport.send('b', rich);
    await waitFor('the rich value', () => valuesFrom(b, 'a').length === 501);
    expect(valuesFrom(b, 'a')[500]).toEqual(rich);

    expect(() => a.transport.send('nobody', 1)).toThrow(Unavailable);
    expect(() => a.transport.send('b', () => 1)).toThrow(/function/);
    expect(a.downs).toEqual([]);
    expect(b.downs).toEqual([]);
    expect(a.rejected).toEqual([]);
    expect(b.rejected).toEqual([]);

    await b.transport.close();
    await waitFor('a to see b down', () => a.downs.length === 1);
    expect(a.downs[0]!.peer.id).toBe('b');
    expect(a.downs[0]!.reason).toMatch(/1001/);
    expect(b.downs.map((down) => down.peer.id)).toEqual(['a']);
    expect(() => a.transport.send('b', 1)).toThrow(Unavailable);
  });

  it('three nodes that all dial each other end with one connection per pair, no flapping, and exchange values', async () => {
    const nodes = [await startedNode('n1'), await startedNode('n2'), await startedNode('n3')];
    // Every node dials every other one at once: every pair dials both ways simultaneously.
    for (const a of nodes) for (const b of nodes) if (a !== b) a.transport.dial(b.transport.url);
    await connected(...nodes);
    await waitFor('one connection per pair', () => nodes.every((n) => n.transport.stats().openConnections === 2));

    for (const a of nodes) for (const b of nodes) if (a !== b) await exchange(a, b, 100, `${a.transport.self.id}->${b.transport.self.id}`);
    for (const n of nodes) {
      expect(n.ups.map((peer) => peer.id).sort()).toEqual(nodes.filter((other) => other !== n).map((other) => other.transport.self.id).sort());
      expect(n.downs).toEqual([]);
      expect(n.rejected.every((rejection) => rejection.code === 4009)).toBe(true);
      expect(n.transport.stats().openConnections).toBe(2);
    }
  });

  it('simultaneous dials keep exactly one connection per pair, without peer-down/peer-up flapping, and keep order', async () => {
    // More rounds (WADI_STRESS_ROUNDS) shake out more interleavings of the two handshakes.
    const rounds = Number(process.env.WADI_STRESS_ROUNDS ?? 6);
    for (let round = 0; round < rounds; round++) {
      const a = await startedNode(`a${round}`);
      const b = await startedNode(`b${round}`);
      // Values sent while the duplicate is being resolved must neither be lost nor reordered.
      let sentByA = 0;
      let sentByB = 0;
      a.transport.on('peer-up', () => {
        for (let i = 0; i < 50; i++) a.transport.send(b.transport.self.id, sentByA++);
      });
      b.transport.on('peer-up', () => {
        for (let i = 0; i < 50; i++) b.transport.send(a.transport.self.id, sentByB++);
      });
      a.transport.dial(b.transport.url);
      // Vary which handshake is ahead: both at once, or one a moment behind the other.
      if (round % 3 === 1) await sleep(1);
      if (round % 3 === 2) await new Promise((resolve) => setImmediate(resolve));
      b.transport.dial(a.transport.url);
      await connected(a, b);
      await waitFor('the duplicate to close', () => a.transport.stats().openConnections === 1 && b.transport.stats().openConnections === 1);
      for (let i = 0; i < 50; i++) {
        a.transport.send(b.transport.self.id, sentByA++);
        b.transport.send(a.transport.self.id, sentByB++);
        if (i % 10 === 0) await sleep(1);
      }
      await waitFor('everything sent to arrive', () => valuesFrom(b, a.transport.self.id).length === sentByA && valuesFrom(a, b.transport.self.id).length === sentByB);
      expect(valuesFrom(b, a.transport.self.id)).toEqual(Array.from({ length: sentByA }, (_, i) => i));
      expect(valuesFrom(a, b.transport.self.id)).toEqual(Array.from({ length: sentByB }, (_, i) => i));
      expect(a.ups).toHaveLength(1);
      expect(b.ups).toHaveLength(1);
      expect(a.downs).toEqual([]);
      expect(b.downs).toEqual([]);
      await a.transport.close();
      await b.transport.close();
    }
  });

  it('a new incarnation of a peer replaces the old one; an older incarnation is refused', async () => {
    const a = await startedNode('a');
    const b1 = await startedNode('b', { self: { id: 'b', incarnation: 1 } });
    b1.transport.dial(a.transport.url);
    await connected(a, b1);

    // b restarts while its old process still holds a connection (a hung or partitioned old process).
    const b2 = await startedNode('b', { self: { id: 'b', incarnation: 2 } });
    b2.transport.dial(a.transport.url);
    await waitFor('a to see incarnation 2', () => a.ups.length === 2);
    expect(a.ups.map((peer) => peer.incarnation)).toEqual([1, 2]);
    expect(a.downs).toHaveLength(1);
    expect(a.downs[0]!.peer).toMatchObject({ id: 'b', incarnation: 1 });
    expect(a.downs[0]!.reason).toMatch(/incarnation 2/);
    expect(a.transport.peers()).toEqual([{ id: 'b', incarnation: 2, url: b2.transport.url }]);
    await waitFor('the old incarnation to see a down', () => b1.downs.length === 1);
    await waitFor('the old incarnation to be told why', () => b1.rejected.some((rejection) => rejection.code === 4010 && rejection.by === 'remote'));
    // b1 keeps redialling (it does not know it is stale) and keeps being refused.
    await waitFor('b1 to be refused again', () => a.rejected.filter((rejection) => rejection.code === 4010).length >= 1);
    expect(a.rejected.every((rejection) => rejection.code === 4010 && rejection.peerId === 'b')).toBe(true);

    a.transport.send('b', 'to the new incarnation');
    // A value meant for the old incarnation is refused rather than handed to its successor.
    expect(() => a.transport.send('b', 'to the old incarnation', 1)).toThrow(/connected to incarnation 2 of node 'b', not 1/);
    a.transport.send('b', 'to incarnation 2 by name', 2);
    await waitFor('delivery to b2', () => valuesFrom(b2, 'a').length === 2);
    expect(valuesFrom(b2, 'a')).toEqual(['to the new incarnation', 'to incarnation 2 by name']);
    expect(valuesFrom(b1, 'a')).toEqual([]);
    await exchange(b2, a, 20, 'b2->a');

    // An old incarnation dialling anew is refused and changes nothing.
    const b0 = await startedNode('b', { self: { id: 'b', incarnation: 0 } });
    b0.transport.dial(a.transport.url);
    await waitFor('b0 to be refused', () => b0.rejected.some((rejection) => rejection.code === 4010));
    expect(b0.ups).toEqual([]);
    expect(a.ups).toHaveLength(2);
    expect(a.downs).toHaveLength(1);
    expect(a.transport.peers()).toEqual([{ id: 'b', incarnation: 2, url: b2.transport.url }]);
  });

  it('redials a node whose connection dropped, once it listens again on the same port', async () => {
    const a = await startedNode('a');
    const b = await startedNode('b');
    const port = Number(new URL(b.transport.url).port);
    a.transport.dial(b.transport.url);
    await connected(a, b);
    await exchange(a, b, 10, 'before');

    await b.transport.close();
    await waitFor('a to see b down', () => a.downs.length === 1);
    expect(() => a.transport.send('b', 1)).toThrow(Unavailable);
    // Let a fail a few redials against the closed port.
    await waitFor('a to report the failing redial', () => a.logs.some((log) => log.level === 'warn' && log.message.includes('cannot connect')));

    const bAgain = await startedNode('b', { port, self: { id: 'b', incarnation: 2 } });
    await waitFor('a to redial b', () => a.transport.isConnected('b'));
    expect(a.ups.map((peer) => peer.incarnation)).toEqual([1, 2]);
    await exchange(a, bAgain, 10, 'after');
    await exchange(bAgain, a, 10, 'back');
  });

  it('forget() drops the connection at once and stops redialling', async () => {
    const a = await startedNode('a');
    const b = await startedNode('b');
    const port = Number(new URL(b.transport.url).port);
    a.transport.dial(b.transport.url);
    await connected(a, b);

    a.transport.forget(b.transport.url);
    expect(a.transport.isConnected('b')).toBe(false);
    expect(a.downs.map((down) => down.reason)).toEqual(['forgotten']);
    await waitFor('b to see a down', () => b.downs.length === 1);

    // Nothing redials: a restarted b on the same port is never dialled. (The wait covers many
    // times the maximum backoff; a redial would show as a connection at b.)
    await b.transport.close();
    const bAgain = await startedNode('b', { port, self: { id: 'b', incarnation: 2 } });
    await sleep(500);
    expect(bAgain.ups).toEqual([]);
    expect(a.ups).toHaveLength(1);

    // A url that is down is forgotten too.
    a.transport.dial(bAgain.transport.url);
    await connected(a, bAgain);
    await bAgain.transport.close();
    await waitFor('a to see b down', () => a.downs.length === 2);
    a.transport.forget(bAgain.transport.url);
    const bThird = await startedNode('b', { port, self: { id: 'b', incarnation: 3 } });
    await sleep(500);
    expect(bThird.ups).toEqual([]);
  });

  it('urls dialled before start() are dialled once listening', async () => {
    const b = await startedNode('b');
    const a = node('a');
    a.transport.dial(b.transport.url);
    expect(a.transport.url).toBe('');
    await a.transport.start();
    await connected(a, b);
    await exchange(b, a, 3, 'early');
  });

  it('dialling its own url does nothing', async () => {
    const a = await startedNode('a');
    a.transport.dial(a.transport.url);
    await sleep(100);
    expect(a.ups).toEqual([]);
    expect(a.rejected).toEqual([]);
  });

  it('a node that answers nothing is dropped after two ping intervals, then redialled', async () => {
    const a = await startedNode('a', { pingIntervalMs: 100 });
    const b = await fakeAcceptor('b');
    a.transport.dial(b.url);
    await waitFor('a to see b up', () => a.transport.isConnected('b'));
    // A hung process: b stops reading (so it answers no ping) while its socket stays open.
    b.established[0]!.pause();
    await waitFor('a to give b up', () => a.downs.length === 1);
    expect(a.downs[0]!.reason).toMatch(/no answer to pings/);
    await waitFor('a to redial b', () => a.ups.length >= 2 && a.transport.isConnected('b'));
    expect(b.established.length).toBeGreaterThanOrEqual(2);
  });
});

describe('ClusterTransport: batching', () => {
  it('values sent in one tick go as one frame', async () => {
    const a = await startedNode('a');
    const b = await startedNode('b');
    a.transport.dial(b.transport.url);
    await connected(a, b);
    const sentBefore = a.transport.stats();
    const receivedBefore = b.transport.stats();

    for (let i = 0; i < 1000; i++) a.transport.send('b', { i, text: 'x'.repeat(20) });
    await waitFor('1000 values', () => valuesFrom(b, 'a').length === 1000);
    expect(valuesFrom(b, 'a')).toEqual(Array.from({ length: 1000 }, (_, i) => ({ i, text: 'x'.repeat(20) })));

    const sent = a.transport.stats();
    const received = b.transport.stats();
    expect(sent.framesSent - sentBefore.framesSent).toBe(1);
    expect(sent.valuesSent - sentBefore.valuesSent).toBe(1000);
    expect(received.framesReceived - receivedBefore.framesReceived).toBe(1);
    expect(received.valuesReceived - receivedBefore.valuesReceived).toBe(1000);
    expect(received.bytesReceived - receivedBefore.bytesReceived).toBe(sent.bytesSent - sentBefore.bytesSent);
  });

  it('a batch past 1 MiB goes out early, and no frame exceeds maxPayloadBytes', async () => {
    const a = await startedNode('a', { maxPayloadBytes: 2 * 1024 * 1024 });
    const b = await startedNode('b', { maxPayloadBytes: 2 * 1024 * 1024 });
    a.transport.dial(b.transport.url);
    await connected(a, b);
    const before = a.transport.stats().framesSent;
    const blob = new Uint8Array(300 * 1024).fill(7);
    for (let i = 0; i < 10; i++) a.transport.send('b', { i, blob });
    // One tick, 3 MB: at least three frames (each flushed at 1 MiB).
    expect(a.transport.stats().framesSent - before).toBeGreaterThanOrEqual(2);
    await waitFor('10 large values', () => valuesFrom(b, 'a').length === 10);
    expect(valuesFrom(b, 'a').map((value) => (value as { i: number }).i)).toEqual([...Array(10).keys()]);
    expect(b.rejected).toEqual([]);

    // A value larger than any node accepts can never be sent: refused at once.
    expect(() => a.transport.send('b', new Uint8Array(3 * 1024 * 1024))).toThrow(/maxPayloadBytes/);
    expect(a.transport.isConnected('b')).toBe(true);
  });
});

describe('ClusterTransport: backpressure', () => {
  it('throws Overloaded past the high watermark while the peer reads nothing, and recovers below the low watermark', async () => {
    const high = 256 * 1024;
    const low = 64 * 1024;
    const a = await startedNode('a', { highWaterMarkBytes: high, lowWaterMarkBytes: low, pingIntervalMs: 60_000 });
    const peer = await rawPeer(a.transport.url, 'slow');
    await waitFor('a to see the slow peer', () => a.transport.isConnected('slow'));

    peer.ws.pause(); // the far end stops reading: its socket buffers, then a's, fill up
    const pad = new Uint8Array(32 * 1024);
    let accepted = 0;
    let overloaded: unknown;
    for (let attempt = 0; attempt < 20_000 && overloaded === undefined; attempt++) {
      try {
        a.transport.send('slow', { seq: accepted, pad });
        accepted++;
      } catch (error) {
        overloaded = error;
      }
      if (attempt % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(overloaded).toBeInstanceOf(Overloaded);
    expect((overloaded as Overloaded).code).toBe('WADI_OVERLOADED');
    // Hysteresis: still refused while above the low watermark, even once below the high one.
    await sleep(20);
    expect(() => a.transport.send('slow', { seq: accepted, pad })).toThrow(Overloaded);
    expect(a.drains).toEqual([]);

    peer.ws.resume();
    await waitFor('the drain event', () => a.drains.length === 1);
    expect(a.drains).toEqual(['slow']);
    a.transport.send('slow', { seq: accepted, pad });
    accepted++;
    await waitFor('every accepted value at the slow peer', () => peer.values.length === accepted);
    expect(peer.values.map((value) => (value as { seq: number }).seq)).toEqual([...Array(accepted).keys()]);
  });
});

describe('ClusterTransport: TLS', () => {
  let dir: string;
  let cert: { keyFile: string; certFile: string };
  let otherCert: { keyFile: string; certFile: string };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'wadi-tls-'));
    cert = selfSignedCertificate(dir, 'one');
    otherCert = selfSignedCertificate(dir, 'two');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('connects over wss with a self-signed certificate', async () => {
    const a = await startedNode('a', { tls: cert });
    const b = await startedNode('b', { tls: cert });
    expect(b.transport.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
    a.transport.dial(b.transport.url);
    await connected(a, b);
    await exchange(a, b, 50, 'secure a->b');
    await exchange(b, a, 50, 'secure b->a');
  });

  it('a plain ws dial to a wss node, and a wss dial that does not trust the certificate, fail cleanly', async () => {
    const secure = await startedNode('secure', { tls: cert });
    const plain = await startedNode('plain');
    plain.transport.dial(secure.transport.url.replace('wss:', 'ws:'));
    await waitFor('the plain dial to fail', () => plain.logs.some((log) => log.message.includes('cannot connect')));
    await waitFor('the secure node to log the failed TLS handshake', () => secure.logs.some((log) => log.message.includes('TLS')));

    const untrusting = await startedNode('untrusting', { tls: otherCert });
    untrusting.transport.dial(secure.transport.url);
    await waitFor('the untrusting dial to fail', () => untrusting.logs.some((log) => log.message.includes('cannot connect')));
    expect(untrusting.logs.find((log) => log.message.includes('cannot connect'))!.message).toMatch(/certificate/);

    expect(plain.ups).toEqual([]);
    expect(untrusting.ups).toEqual([]);
    expect(secure.ups).toEqual([]);
    // The secure node still serves a node that does it right.
    const good = await startedNode('good', { tls: cert });
    good.transport.dial(secure.transport.url);
    await connected(good, secure);
    await exchange(good, secure, 5, 'good');
  });
});

function selfSignedCertificate(dir: string, name: string): { keyFile: string; certFile: string } {
  const keyFile = join(dir, `${name}.key.pem`);
  const certFile = join(dir, `${name}.cert.pem`);
  execFileSync('/usr/bin/openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', `/CN=wadi test ${name}`,
    '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { keyFile, certFile };
}

/** A node made of a bare ws server that performs the accepting side of the handshake. */
async function fakeAcceptor(id: string): Promise<{ url: string; established: WebSocket[] }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  fakeServers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const established: WebSocket[] = [];
  server.on('connection', (ws) => {
    ws.on('error', () => {});
    const handshake = new AcceptorHandshake({ cluster: CLUSTER, secret: SECRET, self: { id, incarnation: 1, url } });
    let open = false;
    ws.on('message', (data: Buffer) => {
      if (open) return;
      const step = handshake.receive(decode(data));
      if ('send' in step) {
        ws.send(encode(step.send));
      } else {
        ws.send(encode(step.accept));
        open = true;
        established.push(ws);
      }
    });
  });
  return { url, established };
}

/** A peer made of a bare ws client that performs the handshake and then collects values. */
async function rawPeer(url: string, id: string): Promise<{ ws: WebSocket; values: unknown[] }> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  rawSockets.push(ws);
  ws.on('error', () => {});
  const handshake = new DialerHandshake({ cluster: CLUSTER, secret: SECRET, self: { id, incarnation: 1, url: 'ws://127.0.0.1:1' } });
  const values: unknown[] = [];
  let established = false;
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => ws.send(encode(handshake.hello())));
    ws.once('close', (code, reason) => reject(new Error(`closed during the handshake: ${code} ${reason.toString()}`)));
    ws.on('message', (data: Buffer) => {
      if (established) {
        values.push(...decodeMany(data));
        return;
      }
      const step = handshake.receive(decode(data));
      if ('send' in step) ws.send(encode(step.send));
      else {
        established = true;
        resolve();
      }
    });
  });
  return { ws, values };
}
