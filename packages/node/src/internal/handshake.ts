/**
 * The handshake of the node-to-node transport, without I/O: the messages, their validation, the
 * close codes, and the mutual challenge-response that proves both ends hold the cluster secret.
 *
 * Four msgpack-encoded binary frames, before any data frame:
 *
 *   dialer   -> acceptor  hello     { type, version, cluster, id, incarnation, url, nonce }
 *   acceptor -> dialer    challenge { type, version, cluster, id, incarnation, url, nonce }
 *   dialer   -> acceptor  proof     { type, proof: HMAC(secret, transcript('dialer')) }
 *   acceptor -> dialer    accept    { type, proof: HMAC(secret, transcript('acceptor')) }
 *
 * The dialer proves first, so that a listening port never hands an HMAC over the secret to a
 * stranger who merely connected (an HMAC over known data is what an offline guess of a weak
 * secret needs). The acceptor answers with its own proof only once it has verified the dialer's
 * and decided to keep the connection; the dialer trusts the acceptor once that proof verifies.
 * Both nonces are fresh per connection and the role is part of the transcript, so neither a
 * recorded proof nor the other side's proof can be replayed.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { describe } from '@wadi/core';

export const PROTOCOL_VERSION = 1;
export const NONCE_BYTES = 32;
/** Handshake frames are small; a bigger one is hostile and is refused before it is decoded. */
export const MAX_HANDSHAKE_FRAME_BYTES = 16 * 1024;
const MAX_ID_LENGTH = 256;
const MAX_URL_LENGTH = 2048;
const MAX_CLUSTER_NAME_LENGTH = 256;

/** Close codes the transport uses; 4000-4999 is the range RFC 6455 leaves to applications. */
export const CloseCode = {
  /** `forget(url)`. */
  normal: 1000,
  /** `close()`: the node is shutting down. */
  goingAway: 1001,
  /** Set by ws for a malformed WebSocket frame. */
  protocolError: 1002,
  /** Set by ws for invalid UTF-8 in a text frame. */
  invalidPayload: 1007,
  /** Set by ws for a frame larger than maxPayloadBytes (its close carries no reason). */
  messageTooBig: 1009,
  /** Too many connections are in their handshake at once. */
  tryAgainLater: 1013,
  wrongCluster: 4001,
  /** A frame that is not the handshake message expected now (a data frame before the handshake...). */
  unexpectedMessage: 4002,
  /** A proof that does not verify: the other end does not hold the cluster secret. */
  authenticationFailed: 4003,
  unsupportedVersion: 4004,
  /** Bytes that do not decode as msgpack (garbage, truncation, length bombs, deep nesting). */
  undecodableFrame: 4005,
  /** A text frame: the protocol is binary. */
  textFrame: 4006,
  handshakeTimeout: 4008,
  /** A second connection between the same two nodes; the other one is kept. */
  duplicateConnection: 4009,
  /** An older incarnation than the connected one, or one replaced by a newer incarnation. */
  staleIncarnation: 4010,
  /** The other end has this node's own id (a node dialled itself, or two nodes share an id). */
  sameNodeId: 4011,
} as const;

/** Close codes that mean "this connection was refused", whichever end closed it. */
export function isRejectionCode(code: number): boolean {
  return (code >= 4000 && code <= 4999) || code === 1002 || code === 1003 || code === 1007 || code === 1008 || code === 1009;
}

export interface NodeIdentity {
  id: string;
  incarnation: number;
  url: string;
}

export interface HelloMessage {
  type: 'hello';
  version: number;
  cluster: string;
  id: string;
  incarnation: number;
  url: string;
  nonce: Uint8Array;
}

export interface ChallengeMessage extends Omit<HelloMessage, 'type'> {
  type: 'challenge';
}

export interface ProofMessage {
  type: 'proof';
  proof: Uint8Array;
}

export interface AcceptMessage {
  type: 'accept';
  proof: Uint8Array;
}

export type HandshakeMessage = HelloMessage | ChallengeMessage | ProofMessage | AcceptMessage;

/** The handshake cannot go on: close the connection with `code` and `reason`. */
export class HandshakeRefused extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'HandshakeRefused';
  }
}

export interface HandshakeConfig {
  cluster: string;
  secret: string;
  self: NodeIdentity;
}

type Role = 'dialer' | 'acceptor';

interface Side {
  id: string;
  incarnation: number;
  nonce: Uint8Array;
}

/**
 * What each proof signs. Every part is length-prefixed, so no two different transcripts share
 * bytes; numbers are written as decimal text, so the bytes do not depend on a codec's choices.
 */
function transcript(role: Role, cluster: string, dialer: Side, acceptor: Side): Buffer {
  const parts: Uint8Array[] = [
    Buffer.from(`wadi-cluster-handshake/${PROTOCOL_VERSION}`),
    Buffer.from(role),
    Buffer.from(cluster),
    Buffer.from(dialer.id),
    Buffer.from(String(dialer.incarnation)),
    dialer.nonce,
    Buffer.from(acceptor.id),
    Buffer.from(String(acceptor.incarnation)),
    acceptor.nonce,
  ];
  const chunks: Uint8Array[] = [];
  for (const part of parts) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(part.byteLength);
    chunks.push(length, part);
  }
  return Buffer.concat(chunks);
}

export function computeProof(secret: string, role: Role, cluster: string, dialer: Side, acceptor: Side): Buffer {
  return createHmac('sha256', secret).update(transcript(role, cluster, dialer, acceptor)).digest();
}

function proofMatches(expected: Buffer, received: Uint8Array): boolean {
  return received.byteLength === expected.byteLength && timingSafeEqual(expected, received);
}

/**
 * The dialling end: `hello()` gives the first frame, then `receive()` takes each frame from the
 * acceptor and returns what to send next, or the verified peer once the handshake is complete.
 */
export class DialerHandshake {
  readonly nonce: Uint8Array = randomBytes(NONCE_BYTES);
  #phase: 'hello' | 'challenge' | 'accept' | 'done' = 'hello';
  #peer: (NodeIdentity & { nonce: Uint8Array }) | undefined;

  constructor(private readonly config: HandshakeConfig) {}

  /** The peer's unverified claim, known once its challenge arrived (for logs and bookkeeping). */
  get claimedPeer(): NodeIdentity | undefined {
    return this.#peer;
  }

  hello(): HelloMessage {
    if (this.#phase !== 'hello') throw new Error('hello() called twice');
    this.#phase = 'challenge';
    const { cluster, self } = this.config;
    return { type: 'hello', version: PROTOCOL_VERSION, cluster, id: self.id, incarnation: self.incarnation, url: self.url, nonce: this.nonce };
  }

  receive(value: unknown): { send: ProofMessage } | { established: NodeIdentity } {
    const { cluster, secret, self } = this.config;
    if (this.#phase === 'challenge') {
      const challenge = parseGreeting(value, 'challenge', cluster);
      if (challenge.id === self.id) {
        throw new HandshakeRefused(CloseCode.sameNodeId, `the node at ${self.url === challenge.url ? 'this url' : challenge.url} has this node's own id '${self.id}'`);
      }
      this.#peer = { id: challenge.id, incarnation: challenge.incarnation, url: challenge.url, nonce: challenge.nonce };
      this.#phase = 'accept';
      const proof = computeProof(secret, 'dialer', cluster, this.#selfSide(), this.#peer);
      return { send: { type: 'proof', proof } };
    }
    if (this.#phase === 'accept' && this.#peer) {
      const accept = parseProof(value, 'accept');
      const expected = computeProof(secret, 'acceptor', cluster, this.#selfSide(), this.#peer);
      if (!proofMatches(expected, accept.proof)) {
        throw new HandshakeRefused(CloseCode.authenticationFailed, 'authentication failed: the acceptor does not hold the cluster secret');
      }
      this.#phase = 'done';
      const { id, incarnation, url } = this.#peer;
      return { established: { id, incarnation, url } };
    }
    throw new HandshakeRefused(CloseCode.unexpectedMessage, `unexpected frame: the handshake is ${this.#phase === 'done' ? 'over' : 'not started'}`);
  }

  #selfSide(): Side {
    return { id: this.config.self.id, incarnation: this.config.self.incarnation, nonce: this.nonce };
  }
}

/**
 * The accepting end: `receive()` takes each frame from the dialer. The hello is answered with a
 * challenge; a verified proof returns the peer and the `accept` frame, which the caller sends only
 * if it keeps the connection (it may still refuse it as a duplicate or a stale incarnation).
 */
export class AcceptorHandshake {
  readonly nonce: Uint8Array = randomBytes(NONCE_BYTES);
  #phase: 'hello' | 'proof' | 'done' = 'hello';
  #peer: (NodeIdentity & { nonce: Uint8Array }) | undefined;

  constructor(private readonly config: HandshakeConfig) {}

  get claimedPeer(): NodeIdentity | undefined {
    return this.#peer;
  }

  receive(value: unknown): { send: ChallengeMessage } | { verified: NodeIdentity; accept: AcceptMessage } {
    const { cluster, secret, self } = this.config;
    if (this.#phase === 'hello') {
      const hello = parseGreeting(value, 'hello', cluster);
      if (hello.id === self.id) {
        throw new HandshakeRefused(CloseCode.sameNodeId, `the dialling node has this node's own id '${self.id}'`);
      }
      this.#peer = { id: hello.id, incarnation: hello.incarnation, url: hello.url, nonce: hello.nonce };
      this.#phase = 'proof';
      return {
        send: { type: 'challenge', version: PROTOCOL_VERSION, cluster, id: self.id, incarnation: self.incarnation, url: self.url, nonce: this.nonce },
      };
    }
    if (this.#phase === 'proof' && this.#peer) {
      const message = parseProof(value, 'proof');
      const selfSide = { id: self.id, incarnation: self.incarnation, nonce: this.nonce };
      const expected = computeProof(secret, 'dialer', cluster, this.#peer, selfSide);
      if (!proofMatches(expected, message.proof)) {
        throw new HandshakeRefused(CloseCode.authenticationFailed, 'authentication failed: the dialler does not hold the cluster secret');
      }
      this.#phase = 'done';
      const { id, incarnation, url } = this.#peer;
      return {
        verified: { id, incarnation, url },
        accept: { type: 'accept', proof: computeProof(secret, 'acceptor', cluster, this.#peer, selfSide) },
      };
    }
    throw new HandshakeRefused(CloseCode.unexpectedMessage, 'unexpected frame: the handshake is over');
  }
}

/** A decoded frame as a record: msgpackr gives plain objects for records and Maps for msgpack maps. */
function asRecord(value: unknown): Record<string, unknown> | undefined {
  if (value instanceof Map) {
    const record: Record<string, unknown> = {};
    // Not "__proto__": assigned, it would give the record a prototype the peer chose.
    for (const [key, entry] of value) if (typeof key === 'string' && key !== '__proto__') record[key] = entry;
    return record;
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array)) {
    return value as Record<string, unknown>;
  }
  return undefined;
}

function parseGreeting<T extends 'hello' | 'challenge'>(value: unknown, type: T, cluster: string): Omit<HelloMessage, 'type'> & { type: T } {
  const record = asRecord(value);
  if (!record) throw new HandshakeRefused(CloseCode.unexpectedMessage, `expected a ${type}, got ${describe(value)}`);
  // The version is checked before anything else: a later version may shape its messages differently.
  if (record.version !== undefined && record.version !== PROTOCOL_VERSION) {
    throw new HandshakeRefused(
      CloseCode.unsupportedVersion,
      `unsupported protocol version ${describe(record.version)}; this node speaks ${PROTOCOL_VERSION}`,
    );
  }
  if (record.type !== type) throw new HandshakeRefused(CloseCode.unexpectedMessage, `expected a ${type}, got a frame of type ${describe(record.type)}`);
  const problem =
    record.version === undefined ? 'no version'
    : !isShortString(record.cluster, MAX_CLUSTER_NAME_LENGTH) ? 'no valid cluster name'
    : !isShortString(record.id, MAX_ID_LENGTH) || record.id === '' ? 'no valid node id'
    : !isIncarnation(record.incarnation) ? 'no valid incarnation'
    : !isShortString(record.url, MAX_URL_LENGTH) ? 'no valid url'
    : !(record.nonce instanceof Uint8Array) || record.nonce.byteLength !== NONCE_BYTES ? `no ${NONCE_BYTES}-byte nonce`
    : undefined;
  if (problem) throw new HandshakeRefused(CloseCode.unexpectedMessage, `malformed ${type}: ${problem}`);
  if (record.cluster !== cluster) {
    throw new HandshakeRefused(CloseCode.wrongCluster, `wrong cluster: ${describe(record.cluster)} is not ${describe(cluster)}`);
  }
  return record as unknown as Omit<HelloMessage, 'type'> & { type: T };
}

function parseProof<T extends 'proof' | 'accept'>(value: unknown, type: T): { type: T; proof: Uint8Array } {
  const record = asRecord(value);
  if (!record || record.type !== type) {
    throw new HandshakeRefused(CloseCode.unexpectedMessage, `expected a ${type}, got ${record ? `a frame of type ${describe(record.type)}` : describe(value)}`);
  }
  if (!(record.proof instanceof Uint8Array)) throw new HandshakeRefused(CloseCode.unexpectedMessage, `malformed ${type}: no proof`);
  return record as unknown as { type: T; proof: Uint8Array };
}

function isShortString(value: unknown, maxLength: number): value is string {
  return typeof value === 'string' && value.length <= maxLength;
}

export function isIncarnation(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
