/**
 * Hostile and broken input against the node-to-node transport: raw WebSocket clients, raw TCP
 * sockets, fake acceptors and misconfigured nodes. Each case must close only the offending
 * connection, with the documented code and a reason, be reported once ('rejected', stats), and
 * leave the transport serving: after each one a legitimate node connects and exchanges values.
 */
import { connect as tcpConnect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { decode, encode } from '@wadi/core';
import {
  ClusterTransport,
  CloseCode,
  type ClusterTransportOptions,
  type PeerIdentity,
  type Rejection,
} from '../src/internal/cluster-transport.js';
import { AcceptorHandshake, DialerHandshake, PROTOCOL_VERSION, computeProof } from '../src/internal/handshake.js';
import { sleep, waitFor } from './helpers.js';

const CLUSTER = 'test-cluster';
const SECRET = 'a long random cluster secret for tests only';
const MAX_PAYLOAD = 64 * 1024;

interface Node {
  transport: ClusterTransport;
  ups: PeerIdentity[];
  downs: { peer: PeerIdentity; reason: string }[];
  received: { from: string; value: unknown }[];
  rejected: Rejection[];
  logs: { level: string; message: string }[];
}

const transports: ClusterTransport[] = [];
const sockets: { terminate(): void }[] = [];
const servers: WebSocketServer[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.terminate();
  for (const server of servers.splice(0)) {
    for (const client of server.clients) client.terminate();
    server.close();
  }
  await Promise.all(transports.splice(0).map((transport) => transport.close()));
});

async function startedNode(id: string, options: Partial<ClusterTransportOptions> = {}): Promise<Node> {
  const logs: Node['logs'] = [];
  const transport = new ClusterTransport({
    host: '127.0.0.1',
    port: 0,
    clusterName: CLUSTER,
    secret: SECRET,
    self: { id, incarnation: 1 },
    maxPayloadBytes: MAX_PAYLOAD,
    reconnectMinMs: 10,
    reconnectMaxMs: 100,
    log: (level, message) => logs.push({ level, message }),
    ...options,
  });
  transports.push(transport);
  const node: Node = { transport, ups: [], downs: [], received: [], rejected: [], logs };
  transport.on('peer-up', (peer) => node.ups.push(peer));
  transport.on('peer-down', (peer, reason) => node.downs.push({ peer, reason }));
  transport.on('message', (peer, value) => node.received.push({ from: peer.id, value }));
  transport.on('rejected', (rejection) => node.rejected.push(rejection));
  await transport.start();
  return node;
}


let legitCount = 0;

/** A well-behaved node still connects to `target` and exchanges values both ways, then leaves. */
async function legitimatePeerWorks(target: Node): Promise<void> {
  const rejectedBefore = target.transport.stats().rejected;
  const id = `legit-${legitCount++}`;
  const legit = await startedNode(id);
  legit.transport.dial(target.transport.url);
  await waitFor(`${id} to connect`, () => legit.transport.isConnected(target.transport.self.id) && target.transport.isConnected(id));
  legit.transport.send(target.transport.self.id, { hello: id });
  target.transport.send(id, { welcome: id });
  await waitFor('values both ways', () => target.received.some((entry) => entry.from === id) && legit.received.length === 1);
  expect(target.received.filter((entry) => entry.from === id).map((entry) => entry.value)).toEqual([{ hello: id }]);
  expect(legit.received.map((entry) => entry.value)).toEqual([{ welcome: id }]);
  expect(legit.rejected).toEqual([]);
  await legit.transport.close();
  await waitFor(`${target.transport.self.id} to see ${id} leave`, () => !target.transport.isConnected(id));
  expect(target.transport.stats().rejected).toBe(rejectedBefore);
}

interface RawClient {
  ws: WebSocket;
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
  frames: Buffer[];
}

function rawClient(url: string): RawClient {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 0 });
  sockets.push(ws);
  ws.on('error', () => {});
  const frames: Buffer[] = [];
  ws.on('message', (data: Buffer) => frames.push(data));
  return {
    ws,
    frames,
    opened: new Promise((resolve) => ws.once('open', () => resolve())),
    closed: new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))),
  };
}

function hello(fields: Record<string, unknown> = {}): Uint8Array {
  return encode({
    type: 'hello',
    version: PROTOCOL_VERSION,
    cluster: CLUSTER,
    id: 'stranger',
    incarnation: 1,
    url: 'ws://127.0.0.1:1',
    nonce: new Uint8Array(32).fill(9),
    ...fields,
  });
}

/** Completes a correct handshake as a dialler, so the next frames are data frames. */
async function handshaken(url: string, id: string): Promise<RawClient> {
  const client = rawClient(url);
  const handshake = new DialerHandshake({ cluster: CLUSTER, secret: SECRET, self: { id, incarnation: 1, url: 'ws://127.0.0.1:1' } });
  await client.opened;
  client.ws.send(encode(handshake.hello()));
  await waitFor('the challenge', () => client.frames.length === 1);
  const proof = handshake.receive(decode(client.frames[0]!));
  if (!('send' in proof)) throw new Error('expected to send a proof');
  client.ws.send(encode(proof.send));
  await waitFor('the accept', () => client.frames.length === 2);
  expect('established' in handshake.receive(decode(client.frames[1]!))).toBe(true);
  client.frames.length = 0;
  return client;
}

/** Expects `target` to have refused exactly one more connection, with `code`, since `before`. */
function expectOneRejection(target: Node, before: number, code: number): Rejection {
  const added = target.rejected.slice(before);
  expect(added.map((rejection) => rejection.code)).toEqual([code]);
  expect(added[0]!.by).toBe('local');
  expect(added[0]!.reason.length).toBeGreaterThan(0);
  expect(target.transport.stats().rejected).toBe(target.rejected.length);
  return added[0]!;
}

describe('ClusterTransport: bad input before the handshake completes', () => {
  let target: Node;
  beforeEach(async () => {
    target = await startedNode('target');
  });

  const cases: { name: string; send: () => (Uint8Array | string)[]; code: number }[] = [
    { name: 'garbage bytes', send: () => [Buffer.from('this is not msgpack, only text in a binary frame')], code: CloseCode.undecodableFrame },
    { name: 'a text frame', send: () => ['{"type":"hello"}'], code: CloseCode.textFrame },
    { name: 'a truncated msgpack hello', send: () => [hello().subarray(0, 20)], code: CloseCode.undecodableFrame },
    { name: 'a data frame before the handshake', send: () => [encode({ to: 'counter/1', method: 'add', args: [1] })], code: CloseCode.unexpectedMessage },
    { name: 'an array32 length bomb (4G elements)', send: () => [new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff])], code: CloseCode.undecodableFrame },
    { name: 'a str32 length bomb', send: () => [new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61])], code: CloseCode.undecodableFrame },
    { name: 'a bin32 length bomb', send: () => [new Uint8Array([0xc6, 0xff, 0xff, 0xff, 0xff, 0x00])], code: CloseCode.undecodableFrame },
    { name: 'a map32 length bomb', send: () => [new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff])], code: CloseCode.undecodableFrame },
    { name: 'deeply nested arrays', send: () => [new Uint8Array(10_000).fill(0x91)], code: CloseCode.undecodableFrame },
    { name: 'the msgpack "never used" byte 0xc1', send: () => [new Uint8Array([0xc1])], code: CloseCode.unexpectedMessage },
    { name: 'a hello for another cluster', send: () => [hello({ cluster: 'another-cluster' })], code: CloseCode.wrongCluster },
    { name: 'a hello of protocol version 2', send: () => [hello({ version: 2 })], code: CloseCode.unsupportedVersion },
    { name: 'a hello with a short nonce', send: () => [hello({ nonce: new Uint8Array(5) })], code: CloseCode.unexpectedMessage },
    { name: 'a hello with a fractional incarnation', send: () => [hello({ incarnation: 1.5 })], code: CloseCode.unexpectedMessage },
    { name: "a hello with the target's own id", send: () => [hello({ id: 'target' })], code: CloseCode.sameNodeId },
    { name: 'a hello whose fields hide behind a "__proto__" key', send: () => [encode(new Map([['__proto__', decode(hello())]]))], code: CloseCode.unexpectedMessage },
    { name: 'a proof before any hello', send: () => [encode({ type: 'proof', proof: new Uint8Array(32) })], code: CloseCode.unexpectedMessage },
    { name: 'a second hello instead of a proof', send: () => [hello(), hello()], code: CloseCode.unexpectedMessage },
    { name: 'a proof made without the secret', send: () => [hello(), encode({ type: 'proof', proof: new Uint8Array(32).fill(1) })], code: CloseCode.authenticationFailed },
    { name: 'a proof of the wrong length', send: () => [hello(), encode({ type: 'proof', proof: new Uint8Array(3) })], code: CloseCode.authenticationFailed },
    { name: 'a frame larger than maxPayloadBytes', send: () => [new Uint8Array(MAX_PAYLOAD + 1)], code: CloseCode.messageTooBig },
  ];

  for (const { name, send, code } of cases) {
    it(`refuses ${name} with ${code}`, async () => {
      const before = target.rejected.length;
      const client = rawClient(target.transport.url);
      await client.opened;
      for (const frame of send()) {
        if (client.ws.readyState === WebSocket.OPEN) client.ws.send(frame, { binary: typeof frame !== 'string' });
      }
      const closed = await client.closed;
      expect(closed.code).toBe(code);
      // ws closes for an oversized frame itself, with no reason on the wire; every other close says why.
      if (code !== CloseCode.messageTooBig) expect(closed.reason.length).toBeGreaterThan(0);
      expectOneRejection(target, before, code);
      expect(target.ups).toEqual([]);
      if (code === CloseCode.messageTooBig) expect(target.logs.some((log) => log.level === 'warn' && log.message.includes('1009'))).toBe(true);
      await legitimatePeerWorks(target);
    });
  }

  it('refuses a client that says nothing with 4008 once the handshake timeout passes', async () => {
    const patient = await startedNode('patient', { handshakeTimeoutMs: 200 });
    const client = rawClient(patient.transport.url);
    const closed = await client.closed;
    expect(closed.code).toBe(CloseCode.handshakeTimeout);
    expect(closed.reason).toMatch(/timeout/);
    expectOneRejection(patient, 0, CloseCode.handshakeTimeout);
    await legitimatePeerWorks(patient);
  });

  it('refuses a client that stops halfway through the handshake (4008)', async () => {
    const patient = await startedNode('patient', { handshakeTimeoutMs: 200 });
    const client = rawClient(patient.transport.url);
    await client.opened;
    client.ws.send(hello());
    const closed = await client.closed;
    expect(client.frames).toHaveLength(1); // the challenge, and never an accept
    expect(closed.code).toBe(CloseCode.handshakeTimeout);
    expectOneRejection(patient, 0, CloseCode.handshakeTimeout);
    await legitimatePeerWorks(patient);
  });

  it('turns away connections past the limit of handshakes in progress (1013), and serves again after', async () => {
    const crowded = await startedNode('crowded', { handshakeTimeoutMs: 20_000 });
    const silent = Array.from({ length: 128 }, () => rawClient(crowded.transport.url));
    await Promise.all(silent.map((client) => client.opened));
    const oneTooMany = rawClient(crowded.transport.url);
    expect((await oneTooMany.closed).code).toBe(CloseCode.tryAgainLater);
    for (const client of silent) client.ws.terminate();
    await Promise.all(silent.map((client) => client.closed));
    await legitimatePeerWorks(crowded);
  });

  it('survives raw TCP garbage on its port (the HTTP layer answers it)', async () => {
    const port = Number(new URL(target.transport.url).port);
    const socket = await rawTcp(port);
    socket.write('\x00\x01\x02 definitely not HTTP \r\n\r\n');
    const answer = await readUntilClosed(socket);
    expect(answer.toString('latin1')).toMatch(/^HTTP\/1\.1 400/);
    expect(target.rejected).toEqual([]);
    await legitimatePeerWorks(target);
  });

  for (const { name, lengthBytes } of [
    { name: 'a frame header claiming 2^63 bytes', lengthBytes: [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff] },
    { name: 'a frame header claiming 1 TiB', lengthBytes: [0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00] },
  ]) {
    it(`closes a raw socket that sends ${name} with 1009, before reading any payload`, async () => {
      const port = Number(new URL(target.transport.url).port);
      const socket = await rawTcp(port);
      socket.write(
        'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      const upgraded = await readUntil(socket, (bytes) => bytes.includes('\r\n\r\n'));
      expect(upgraded.toString('latin1')).toMatch(/^HTTP\/1\.1 101/);
      // A masked binary frame whose 64-bit length says more than the target accepts.
      socket.write(Buffer.from([0x82, 0xff, ...lengthBytes, 1, 2, 3, 4]));
      // The answer is a close frame: 0x88, a length, then the code.
      const closeFrame = await readUntilClosed(socket);
      expect(closeFrame[0]).toBe(0x88);
      expect(closeFrame.readUInt16BE(2)).toBe(CloseCode.messageTooBig);
      expectOneRejection(target, 0, CloseCode.messageTooBig);
      await legitimatePeerWorks(target);
    });
  }
});

describe('ClusterTransport: bad input after the handshake', () => {
  let target: Node;
  beforeEach(async () => {
    target = await startedNode('target');
  });

  const cases: { name: string; frame: Uint8Array | string; code: number }[] = [
    { name: 'a truncated msgpack batch', frame: new Uint8Array([...encode({ ok: 1 }), 0x93, 0x01, 0x02]), code: CloseCode.undecodableFrame },
    { name: 'an array32 length bomb', frame: new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]), code: CloseCode.undecodableFrame },
    { name: 'a str32 length bomb', frame: new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff]), code: CloseCode.undecodableFrame },
    { name: 'a bin32 length bomb', frame: new Uint8Array([0xc6, 0xff, 0xff, 0xff, 0xff]), code: CloseCode.undecodableFrame },
    { name: 'the reserved byte 0xc1 inside a value', frame: new Uint8Array([0x92, 0x01, 0xc1]), code: CloseCode.undecodableFrame },
    { name: 'an empty frame', frame: new Uint8Array(0), code: CloseCode.undecodableFrame },
    { name: 'a text frame', frame: 'text after the handshake', code: CloseCode.textFrame },
    { name: 'a frame larger than maxPayloadBytes', frame: new Uint8Array(MAX_PAYLOAD + 1), code: CloseCode.messageTooBig },
  ];

  for (const { name, frame, code } of cases) {
    it(`closes a peer that sends ${name} with ${code}, after delivering what it sent before`, async () => {
      const peer = await handshaken(target.transport.url, 'rogue');
      await waitFor('the rogue peer up', () => target.transport.isConnected('rogue'));
      peer.ws.send(new Uint8Array([...encode('first'), ...encode('second')]));
      peer.ws.send(frame, { binary: typeof frame !== 'string' });
      const closed = await peer.closed;
      expect(closed.code).toBe(code);
      if (code !== CloseCode.messageTooBig) expect(closed.reason.length).toBeGreaterThan(0);
      expect(target.received.filter((entry) => entry.from === 'rogue').map((entry) => entry.value)).toEqual(['first', 'second']);
      expectOneRejection(target, 0, code);
      expect(target.downs.map((down) => down.peer.id)).toEqual(['rogue']);
      expect(target.downs[0]!.reason).toContain(String(code));
      expect(target.transport.isConnected('rogue')).toBe(false);
      await legitimatePeerWorks(target);
    });
  }

  it('a message listener that throws is logged and harms nothing', async () => {
    target.transport.on('message', (_peer, value) => {
      if (value === 'boom') throw new Error('listener bug');
    });
    const peer = await handshaken(target.transport.url, 'sender');
    peer.ws.send(new Uint8Array([...encode('before'), ...encode('boom'), ...encode('after')]));
    await waitFor('all three values', () => target.received.length === 3);
    expect(target.received.map((entry) => entry.value)).toEqual(['before', 'boom', 'after']);
    expect(target.logs.some((log) => log.level === 'error' && log.message.includes("'message' listener threw"))).toBe(true);
    expect(target.transport.isConnected('sender')).toBe(true);
    await legitimatePeerWorks(target);
  });
});

describe('ClusterTransport: misconfigured nodes', () => {
  it('a node with the wrong secret: both ends report 4003 and neither sees the other up', async () => {
    const target = await startedNode('target');
    const intruder = await startedNode('intruder', { secret: 'not the cluster secret' });
    intruder.transport.dial(target.transport.url);
    await waitFor('both ends to report the rejection', () => target.rejected.length >= 1 && intruder.rejected.length >= 1);
    expect(target.rejected.every((rejection) => rejection.code === CloseCode.authenticationFailed && rejection.by === 'local')).toBe(true);
    expect(intruder.rejected.every((rejection) => rejection.code === CloseCode.authenticationFailed && rejection.by === 'remote')).toBe(true);
    expect(target.rejected[0]!.reason).toMatch(/secret/);
    expect(intruder.rejected[0]!.reason).toMatch(/secret/);
    // The intruder keeps redialling (with backoff) but logs its failure once.
    await waitFor('a few more refusals', () => target.rejected.length >= 3);
    expect(intruder.logs.filter((log) => log.message.includes('4003')).length).toBe(1);
    await intruder.transport.close();
    expect(target.ups).toEqual([]);
    expect(intruder.ups).toEqual([]);
    expect(target.transport.stats().rejected).toBe(target.rejected.length);
    await legitimatePeerWorks(target);
  });

  it('a node of another cluster: refused with 4001 at both ends', async () => {
    const target = await startedNode('target');
    const stranger = await startedNode('stranger', { clusterName: 'another-cluster' });
    stranger.transport.dial(target.transport.url);
    await waitFor('both ends to report the rejection', () => target.rejected.length >= 1 && stranger.rejected.length >= 1);
    expect(target.rejected[0]).toMatchObject({ code: CloseCode.wrongCluster, by: 'local' });
    expect(stranger.rejected[0]).toMatchObject({ code: CloseCode.wrongCluster, by: 'remote' });
    expect(stranger.rejected[0]!.reason).toMatch(/another-cluster/);
    await stranger.transport.close();
    expect(target.ups).toEqual([]);
    expect(stranger.ups).toEqual([]);
    await legitimatePeerWorks(target);
  });

  it('two nodes with the same id refuse each other with 4011, and the dialler stops dialling', async () => {
    const target = await startedNode('twin');
    const twin = await startedNode('twin', { self: { id: 'twin', incarnation: 7 } });
    twin.transport.dial(target.transport.url);
    await waitFor('the refusal', () => twin.rejected.length === 1 && target.rejected.length === 1);
    expect(target.rejected[0]).toMatchObject({ code: CloseCode.sameNodeId, by: 'local' });
    expect(twin.rejected[0]).toMatchObject({ code: CloseCode.sameNodeId, by: 'remote' });
    await waitFor('the dialler to give up', () => twin.logs.some((log) => log.message.includes('stopped dialling')));
    await sleep(200); // several backoff periods: no redial
    expect(target.rejected).toHaveLength(1);
  });
});

describe('ClusterTransport: a dialled node that misbehaves', () => {
  const scripts: { name: string; code: number; answer: (ws: WebSocket, handshake: AcceptorHandshake, frame: Buffer, index: number) => void }[] = [
    {
      name: 'answers with garbage',
      code: CloseCode.undecodableFrame,
      answer: (ws) => ws.send(Buffer.from([0x93, 0x01])),
    },
    {
      name: 'answers with a challenge for another cluster',
      code: CloseCode.wrongCluster,
      answer: (ws) => ws.send(encode({ type: 'challenge', version: 1, cluster: 'elsewhere', id: 'fake', incarnation: 1, url: 'ws://x', nonce: new Uint8Array(32) })),
    },
    {
      name: 'accepts with a proof it could not make',
      code: CloseCode.authenticationFailed,
      answer: (ws, handshake, frame, index) => {
        if (index === 0) ws.send(encode(stepOf(handshake, frame)));
        else ws.send(encode({ type: 'accept', proof: new Uint8Array(32).fill(7) }));
      },
    },
    {
      name: 'sends data before its accept',
      code: CloseCode.unexpectedMessage,
      answer: (ws, handshake, frame, index) => {
        if (index === 0) ws.send(encode(stepOf(handshake, frame)));
        else ws.send(encode({ some: 'data' }));
      },
    },
    {
      name: 'replays an accept proof made for another nonce',
      code: CloseCode.authenticationFailed,
      answer: (ws, handshake, frame, index) => {
        if (index === 0) ws.send(encode(stepOf(handshake, frame)));
        else {
          const other = { id: 'x', incarnation: 1, nonce: new Uint8Array(32) };
          ws.send(encode({ type: 'accept', proof: computeProof(SECRET, 'acceptor', CLUSTER, other, other) }));
        }
      },
    },
  ];

  for (const { name, code, answer } of scripts) {
    it(`refuses a dialled node that ${name} (${code}), and keeps redialling it`, async () => {
      const dialler = await startedNode('dialler');
      const fake = await fakeNode('fake', answer);
      dialler.transport.dial(fake.url);
      await waitFor('the refusal', () => dialler.rejected.length >= 1);
      expect(dialler.rejected[0]).toMatchObject({ code, by: 'local', remote: fake.url });
      expect(dialler.rejected[0]!.reason.length).toBeGreaterThan(0);
      await waitFor('the fake node to see the close', () => fake.closes.length >= 1);
      expect(fake.closes[0]).toMatchObject({ code });
      await waitFor('a redial', () => fake.connections >= 2);
      expect(dialler.ups).toEqual([]);
      dialler.transport.forget(fake.url);
      await legitimatePeerWorks(dialler);
    });
  }
});

function stepOf(handshake: AcceptorHandshake, frame: Buffer): unknown {
  const step = handshake.receive(decode(frame));
  return 'send' in step ? step.send : step.accept;
}

async function fakeNode(
  id: string,
  answer: (ws: WebSocket, handshake: AcceptorHandshake, frame: Buffer, index: number) => void,
): Promise<{ url: string; connections: number; closes: { code: number; reason: string }[] }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const fake = { url, connections: 0, closes: [] as { code: number; reason: string }[] };
  server.on('connection', (ws) => {
    fake.connections++;
    ws.on('error', () => {});
    ws.on('close', (code, reason) => fake.closes.push({ code, reason: reason.toString() }));
    const handshake = new AcceptorHandshake({ cluster: CLUSTER, secret: SECRET, self: { id, incarnation: 1, url } });
    let index = 0;
    ws.on('message', (frame: Buffer) => answer(ws, handshake, frame, index++));
  });
  return fake;
}

async function rawTcp(port: number): Promise<Socket> {
  const socket = tcpConnect({ host: '127.0.0.1', port });
  sockets.push({ terminate: () => socket.destroy() });
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  return socket;
}

function readUntil(socket: Socket, done: (bytes: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve) => {
    let bytes = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      if (done(bytes)) {
        socket.off('data', onData);
        socket.pause();
        resolve(bytes);
      }
    };
    socket.on('data', onData);
    socket.resume();
  });
}

function readUntilClosed(socket: Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('close', () => resolve(Buffer.concat(chunks)));
    socket.resume();
  });
}
