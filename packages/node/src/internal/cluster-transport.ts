/**
 * The node-to-node transport: WebSocket connections between the members of a cluster, carrying
 * opaque msgpack values. What the values mean is the node's business; this module is responsible
 * for who may talk, in what order, and how fast:
 *
 * - Authentication before anything else: every connection starts with the handshake of
 *   `handshake.ts` (cluster name, protocol version, identities, a mutual HMAC challenge-response
 *   over the cluster secret). Nothing else is accepted until it completes; whatever breaks the
 *   rules closes that connection with a 4xxx code and a reason, is reported once ('rejected' and
 *   a log line), and never disturbs the other connections or the process.
 * - Exactly one connection per pair of nodes. When two connect at once, both ends keep the one
 *   dialled by the node with the smaller id; the switch is invisible to the node (no peer-down
 *   and peer-up) and keeps per-pair order (see `#onVerified`). A new incarnation of a peer
 *   replaces the old one; an older incarnation than the connected one is refused.
 * - Batching: values sent to one peer in one tick of the event loop go out as one binary frame
 *   (concatenated msgpack values), like the thread links of `link.ts`. No frame is larger than
 *   `maxPayloadBytes`, which must therefore be the same on every node of a cluster. A data frame
 *   is decoded whole or not at all: one that does not decode closes the connection (4005) and
 *   none of its values is delivered. Values that decode are delivered as they are; checking
 *   their shape is the node's job.
 * - Backpressure: past a high watermark of unsent bytes for a peer, `send()` throws `Overloaded`
 *   until they fall below a low watermark (hysteresis), then 'drain' is emitted.
 * - Liveness: ws pings; a connection that answers nothing for two ping intervals is terminated.
 * - Reconnection: the urls given to `dial()` are kept connected, redialled with exponential backoff
 *   and jitter whenever the connection fails or drops, until `forget()` or `close()`.
 * - TLS: with `tls` the server speaks wss, and dialling wss trusts the configured CA (or the
 *   node's own certificate, for a self-signed cluster).
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { DecodeError, InvalidArgument, Overloaded, Unavailable, decode, decodeManyFromPeer, encode, encodeView } from '@wadi/core';
import {
  AcceptorHandshake,
  CloseCode,
  DialerHandshake,
  HandshakeRefused,
  MAX_HANDSHAKE_FRAME_BYTES,
  isIncarnation,
  isRejectionCode,
  type HandshakeMessage,
  type NodeIdentity,
} from './handshake.js';

export { CloseCode } from './handshake.js';

export interface PeerIdentity {
  id: string;
  incarnation: number;
  url: string;
}

export interface ClusterTransportOptions {
  /** Listen address, e.g. '127.0.0.1'. */
  host: string;
  /** False for a process that only dials (a client): no server, and its url is ''. Default true. */
  listen?: boolean;
  /** Listen port; 0 picks a free one. */
  port: number;
  clusterName: string;
  /** The cluster secret (WADI_SECRET): both ends of every connection prove they hold it. Use a long random one. */
  secret: string;
  /** This node; its url is derived after listening (ws(s)://host:port) unless `advertisedUrl` is given. */
  self: { id: string; incarnation: number };
  /** The url other nodes should dial, when it differs from ws(s)://host:port (NAT, 0.0.0.0, a proxy). */
  advertisedUrl?: string;
  /**
   * Serve wss with this key and certificate; when dialling wss, trust `caFile` (or else
   * `certFile`). A transport that does not listen (a client) needs only `caFile`.
   */
  tls?: { keyFile: string; certFile: string; caFile?: string } | { caFile: string };
  /** Largest frame accepted (ws maxPayload, default 16 MiB); a larger one closes the connection with 1009. */
  maxPayloadBytes?: number;
  /** Unsent bytes for one peer (socket buffer plus unsent batch) past which `send()` throws `Overloaded` (default 8 MiB)... */
  highWaterMarkBytes?: number;
  /** ...until they fall back to this (default 1 MiB). */
  lowWaterMarkBytes?: number;
  /** From connection to completed handshake (default 5000 ms). */
  handshakeTimeoutMs?: number;
  /** Ping period (default 1000 ms); a connection that answers nothing for two periods is terminated. */
  pingIntervalMs?: number;
  /** First redial delay (default 100 ms); it doubles, with jitter, up to `reconnectMaxMs` (default 5000 ms). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Where log lines go (default: the console). */
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

/** A connection that was refused or closed for breaking the protocol, by either end. */
export interface Rejection {
  /** The dialled url, or the remote address and port of an accepted connection. */
  remote: string;
  code: number;
  reason: string;
  /** 'local' when this node closed the connection, 'remote' when the other end did. */
  by: 'local' | 'remote';
  /** The node id the other end claimed, when it got that far. */
  peerId?: string;
}

export interface ClusterTransportEvents {
  /** A peer completed the handshake; `send()` to it works from now on. */
  'peer-up': [peer: PeerIdentity];
  /** The peer's connection is gone (after its peer-up); values queued for it are dropped. */
  'peer-down': [peer: PeerIdentity, reason: string];
  /** A value from a peer, in the order that peer sent it. */
  message: [peer: PeerIdentity, value: unknown];
  rejected: [rejection: Rejection];
  /** A peer for which `send()` threw `Overloaded` is below the low watermark again. */
  drain: [peer: PeerIdentity];
}

export interface ClusterTransportStats {
  /** Data frames (batches) and values; handshake frames are not counted. */
  framesSent: number;
  framesReceived: number;
  valuesSent: number;
  valuesReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Connections refused or closed for breaking the protocol ('rejected' events). */
  rejected: number;
  /** Connections past their handshake now (normally one per peer; two for a moment while a duplicate closes). */
  openConnections: number;
}

const DEFAULTS = {
  listen: true,
  maxPayloadBytes: 16 * 1024 * 1024,
  highWaterMarkBytes: 8 * 1024 * 1024,
  lowWaterMarkBytes: 1024 * 1024,
  handshakeTimeoutMs: 5000,
  pingIntervalMs: 1000,
  reconnectMinMs: 100,
  reconnectMaxMs: 5000,
};

const INITIAL_BATCH_BYTES = 16 * 1024;
/** A batch this large goes out at once instead of at the end of the tick. */
const FLUSH_AT_BYTES = 1024 * 1024;
/** How long a closing connection may take to finish its close handshake before it is cut. */
const CLOSE_GRACE_MS = 2000;
/** Connections still in their handshake, from all strangers together; more are turned away (1013). */
const MAX_PENDING_HANDSHAKES = 128;
/** ws limits close reasons to 123 bytes. */
const MAX_CLOSE_REASON_BYTES = 123;

type Log = NonNullable<ClusterTransportOptions['log']>;

const consoleLog: Log = (level, message, fields) => {
  if (fields) console[level](`[wadi transport] ${message}`, fields);
  else console[level](`[wadi transport] ${message}`);
};

/** One WebSocket, from its first byte to its close. */
class Connection {
  phase: 'handshake' | 'open' | 'closed' = 'handshake';
  /** The verified peer, once the handshake is complete. */
  identity: PeerIdentity | undefined;
  /** Who dialled this connection: it decides which of two duplicate connections is kept. */
  dialerId: string | undefined;
  /** Set when this end closes the connection, so the close is reported with our code and reason. */
  localClose: { code: number; reason: string } | undefined;
  /** A transport-level failure (refused, reset, TLS) seen before the close. */
  error: Error | undefined;
  rejectionReported = false;
  lastHeardAt = Date.now();
  handshakeTimer: NodeJS.Timeout | undefined;
  killTimer: NodeJS.Timeout | undefined;
  /** A dialled connection whose proof is sent: the acceptor may already treat it as established. */
  awaitingAccept = false;
  /**
   * Other connections with the same peer that may carry values the peer sent before the ones on
   * this connection (see `#establish`). Until they have closed, this connection's data frames wait
   * in `held`, so that the peer's values arrive in the order it sent them.
   */
  readonly waitFor = new Set<Connection>();
  /** The connections that wait for this one. */
  readonly blocks = new Set<Connection>();
  held: Buffer[] = [];
  readonly closed: Promise<void>;
  resolveClosed!: () => void;

  constructor(
    readonly ws: WebSocket,
    readonly role: 'dialer' | 'acceptor',
    readonly remote: string,
    readonly handshake: DialerHandshake | AcceptorHandshake,
    readonly dial: Dial | undefined,
    selfId: string,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    if (role === 'dialer') this.dialerId = selfId;
  }

  get claimedPeerId(): string | undefined {
    return this.identity?.id ?? this.handshake.claimedPeer?.id;
  }
}

/** One peer node: its connection (absent for a moment while a duplicate is being replaced) and its outgoing batch. */
interface PeerLink {
  readonly identity: PeerIdentity;
  connection: Connection | undefined;
  batch: Uint8Array;
  batchBytes: number;
  batchValues: number;
  overloaded: boolean;
  /** Runs out when the connection was closed as a duplicate and its replacement never came. */
  switchTimer: NodeJS.Timeout | undefined;
}

/** A url this node keeps a connection to. */
interface Dial {
  readonly url: string;
  stopped: boolean;
  /** Failed attempts since the last success: the backoff exponent. */
  attempts: number;
  timer: NodeJS.Timeout | undefined;
  connection: Connection | undefined;
  /** The node last found at this url. */
  peerId: string | undefined;
  /** Lost a duplicate race to another connection with this peer: redial when that peer goes down. */
  waitingForPeer: string | undefined;
  /** The last failure logged, so a url that keeps failing the same way is logged once. */
  lastFailure: string | undefined;
}

export class ClusterTransport extends EventEmitter<ClusterTransportEvents> {
  readonly #options: Required<Omit<ClusterTransportOptions, 'advertisedUrl' | 'tls' | 'log'>> & Pick<ClusterTransportOptions, 'advertisedUrl' | 'tls'>;
  readonly #log: Log;
  #url = '';
  #state: 'new' | 'starting' | 'started' | 'closing' | 'closed' = 'new';
  #server: http.Server | undefined;
  #wss: WebSocketServer | undefined;
  /** Certificates to trust when dialling wss urls. */
  #ca: Buffer | undefined;
  readonly #connections = new Set<Connection>();
  readonly #peers = new Map<string, PeerLink>();
  readonly #dials = new Map<string, Dial>();
  readonly #dirty = new Set<PeerLink>();
  #flushScheduled: NodeJS.Immediate | undefined;
  #pingTimer: NodeJS.Timeout | undefined;
  #pendingHandshakes = 0;
  #closePromise: Promise<void> | undefined;
  readonly #stats: Omit<ClusterTransportStats, 'openConnections'> = {
    framesSent: 0,
    framesReceived: 0,
    valuesSent: 0,
    valuesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    rejected: 0,
  };

  constructor(options: ClusterTransportOptions) {
    super();
    const { advertisedUrl, tls, log, ...rest } = options;
    this.#options = { ...DEFAULTS, ...(withoutUndefined(rest) as typeof rest), advertisedUrl, tls };
    this.#log = log ?? consoleLog;
    validate(this.#options);
  }

  /** ws(s)://host:port (or the advertised url); '' until `start()` has resolved. */
  get url(): string {
    return this.#url;
  }

  get self(): PeerIdentity {
    return { id: this.#options.self.id, incarnation: this.#options.self.incarnation, url: this.#url };
  }

  /** Listens for other nodes, then starts dialling what `dial()` was given so far. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new InvalidArgument(`cannot start a transport that is ${this.#state}`);
    this.#state = 'starting';
    try {
      if (this.#options.listen !== false) await this.#listen();
      else if (this.#options.tls?.caFile !== undefined) this.#ca = await readFile(this.#options.tls.caFile);
    } catch (error) {
      this.#state = 'closed';
      throw error;
    }
    if ((this.#state as string) !== 'starting') {
      this.#server?.close(); // close() was called while this was starting
      return;
    }
    this.#state = 'started';
    this.#pingTimer = setInterval(this.#checkLiveness, this.#options.pingIntervalMs);
    this.#pingTimer.unref();
    if (this.#options.listen !== false) this.#log('info', `listening at ${this.#url}`, { id: this.#options.self.id, incarnation: this.#options.self.incarnation });
    for (const dial of this.#dials.values()) this.#connect(dial);
  }

  async #listen(): Promise<void> {
    const { host, port, tls, maxPayloadBytes, handshakeTimeoutMs } = this.#options;
    // The HTTP stage of a connection is bounded too, so a stranger cannot hold a socket open forever.
    const httpLimits = { headersTimeout: Math.max(handshakeTimeoutMs, 1000), requestTimeout: Math.max(handshakeTimeoutMs, 1000) };
    let server: http.Server;
    if (tls) {
      if (!('keyFile' in tls)) throw new InvalidArgument('tls needs keyFile and certFile to serve wss (caFile alone is for a client)');
      const [key, cert, ca] = await Promise.all([
        readFile(tls.keyFile),
        readFile(tls.certFile),
        tls.caFile === undefined ? undefined : readFile(tls.caFile),
      ]);
      this.#ca = ca ?? cert;
      const tlsServer = https.createServer({ ...httpLimits, key, cert });
      tlsServer.on('tlsClientError', (error, socket) => {
        this.#log('warn', 'TLS handshake with a client failed', { remote: `${socket.remoteAddress}:${socket.remotePort}`, error: error.message });
      });
      server = tlsServer;
    } else {
      server = http.createServer(httpLimits);
    }
    server.on('request', (_request, response) => {
      response.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
      response.end('a wadi node: this port speaks WebSocket only\n');
    });
    const wss = new WebSocketServer({ server, maxPayload: maxPayloadBytes, perMessageDeflate: false, clientTracking: false });
    wss.on('connection', (ws, request) => this.#accept(ws, request));
    wss.on('error', (error) => this.#log('error', 'WebSocket server error', { error: error.message }));
    this.#server = server;
    this.#wss = wss;

    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (error) => this.#log('error', 'listening socket error', { error: error.message }));

    const address = server.address() as AddressInfo;
    const urlHost = host.includes(':') ? `[${host}]` : host;
    this.#url = this.#options.advertisedUrl ?? `${tls ? 'wss' : 'ws'}://${urlHost}:${address.port}`;
    if (this.#options.advertisedUrl === undefined && (host === '0.0.0.0' || host === '::')) {
      this.#log('warn', `listening on ${host}: other nodes cannot dial ${this.#url}; set advertisedUrl`);
    }
  }

  /**
   * Keep a connection to the node at `url`: dial, handshake, and redial with backoff while it
   * fails or drops, until `forget(url)` or `close()`. Idempotent. Before `start()` the url is
   * remembered and dialled once listening.
   */
  dial(url: string): void {
    if (this.#state === 'closing' || this.#state === 'closed') throw new Unavailable('the transport is closed');
    if (this.#dials.has(url)) return;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new InvalidArgument(`not a url: ${JSON.stringify(url)}`);
    }
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new InvalidArgument(`not a ws:// or wss:// url: ${url}`);
    const dial: Dial = {
      url,
      stopped: false,
      attempts: 0,
      timer: undefined,
      connection: undefined,
      peerId: undefined,
      waitingForPeer: undefined,
      lastFailure: undefined,
    };
    this.#dials.set(url, dial);
    if (url === this.#url) {
      // Seed lists often name every node, this one included.
      dial.stopped = true;
      return;
    }
    if (this.#state === 'started') this.#connect(dial);
  }

  /**
   * Dial `url` now rather than at the end of its backoff: a node known to be back (a layout lists
   * it again) should not wait out the delay its earlier failures earned.
   */
  redialNow(url: string): void {
    const dial = this.#dials.get(url);
    if (dial === undefined) return this.dial(url);
    if (dial.stopped || dial.connection !== undefined || dial.timer === undefined || this.#state !== 'started') return;
    clearTimeout(dial.timer);
    dial.timer = undefined;
    dial.attempts = 0;
    this.#connect(dial);
  }

  /** Stop redialling `url`, and close the connection to the node there, if any (peer-down at once). */
  forget(url: string): void {
    const dial = this.#dials.get(url);
    for (const link of [...this.#peers.values()]) {
      if (link.identity.url === url || (dial?.connection !== undefined && dial.connection === link.connection)) {
        this.#removePeer(link, 'forgotten', { code: CloseCode.normal, reason: 'forgotten' });
      }
    }
    if (dial) {
      this.#dials.delete(url);
      dial.stopped = true;
      clearTimeout(dial.timer);
      if (dial.connection) this.#closeConnection(dial.connection, CloseCode.normal, 'forgotten');
    }
  }

  /**
   * Queue `value` for `peerId`. Values sent in one tick go out as one frame. Throws at once:
   * `Unavailable` when that peer is not connected, `Overloaded` past the high watermark,
   * `NotSerializable` for a value that cannot be encoded, `InvalidArgument` for a value whose
   * encoding is larger than `maxPayloadBytes` (no node would accept it). Given an `incarnation`,
   * also `Unavailable` when the connection is to another incarnation of that node: a value meant
   * for a process that restarted must not reach its successor, which would take it for its own.
   */
  send(peerId: string, value: unknown, incarnation?: number): void {
    const link = this.#peers.get(peerId);
    if (!link) throw new Unavailable(`not connected to node '${peerId}'`);
    if (incarnation !== undefined && link.identity.incarnation !== incarnation) {
      throw new Unavailable(`connected to incarnation ${link.identity.incarnation} of node '${peerId}', not ${incarnation}`);
    }
    const unsent = unsentBytes(link);
    if (link.overloaded) {
      if (unsent > this.#options.lowWaterMarkBytes) throw this.#overloaded(link, unsent);
      link.overloaded = false;
    } else if (unsent > this.#options.highWaterMarkBytes) {
      link.overloaded = true;
      throw this.#overloaded(link, unsent);
    }
    const bytes = encodeView(value);
    const { maxPayloadBytes } = this.#options;
    if (bytes.byteLength > maxPayloadBytes) {
      throw new InvalidArgument(`a value of ${bytes.byteLength} bytes exceeds maxPayloadBytes (${maxPayloadBytes})`);
    }
    // Keep every frame within what the far end accepts. (flush() encodes nothing, so `bytes` stays valid.)
    if (link.batchBytes + bytes.byteLength > maxPayloadBytes) {
      this.#flushLink(link);
      // Still full: the connection is being switched and cannot take the batch yet.
      if (link.batchBytes > 0) throw this.#overloaded(link, unsent);
    }
    const end = link.batchBytes + bytes.byteLength;
    if (end > link.batch.byteLength) link.batch = grow(link.batch, link.batchBytes, end);
    link.batch.set(bytes, link.batchBytes);
    link.batchBytes = end;
    link.batchValues++;
    if (end >= FLUSH_AT_BYTES) {
      this.#flushLink(link);
    } else {
      this.#dirty.add(link);
      this.#flushScheduled ??= setImmediate(this.#flushDirty);
    }
  }

  /**
   * Sends what was queued now rather than at the end of the tick. The node calls it once it has
   * handled a batch from a worker, and the transport does after each frame it received: what that
   * input produced (a forwarded call, a reply, a replica's acknowledgement) is on a path someone
   * waits on, and it goes ahead of the work the same input woke elsewhere (messages to the
   * workers go out on a microtask, after this). Batching is kept where it pays: one frame per
   * peer for everything a received batch produced.
   */
  flush(): void {
    if (this.#dirty.size === 0) return;
    if (this.#flushScheduled !== undefined) clearImmediate(this.#flushScheduled);
    this.#flushDirty();
  }

  isConnected(peerId: string): boolean {
    return this.#peers.has(peerId);
  }

  /** The peers that are up (peer-up seen, peer-down not yet). */
  peers(): PeerIdentity[] {
    return [...this.#peers.values()].map((link) => link.identity);
  }

  stats(): ClusterTransportStats {
    let open = 0;
    for (const connection of this.#connections) if (connection.phase === 'open') open++;
    return { ...this.#stats, openConnections: open };
  }

  /** Flush what was sent, close every connection (1001) and the listening socket. */
  close(): Promise<void> {
    this.#closePromise ??= this.#close();
    return this.#closePromise;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    clearInterval(this.#pingTimer);
    for (const dial of this.#dials.values()) {
      dial.stopped = true;
      clearTimeout(dial.timer);
    }
    this.#flushDirty();
    for (const link of [...this.#peers.values()]) {
      this.#removePeer(link, 'this node is closing its transport', { code: CloseCode.goingAway, reason: 'node shutting down' });
    }
    for (const connection of this.#connections) this.#closeConnection(connection, CloseCode.goingAway, 'node shutting down');
    await Promise.all([...this.#connections].map((connection) => connection.closed));
    const server = this.#server;
    if (server?.listening) {
      this.#wss?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    if (this.#flushScheduled) clearImmediate(this.#flushScheduled);
    this.#flushScheduled = undefined;
    this.#state = 'closed';
  }

  // --- connections -----------------------------------------------------------------------------

  #accept(ws: WebSocket, request: http.IncomingMessage): void {
    const remote = `${request.socket.remoteAddress}:${request.socket.remotePort}`;
    if (this.#state !== 'started') {
      ws.on('error', () => {});
      ws.close(CloseCode.goingAway, 'node shutting down');
      return;
    }
    if (this.#pendingHandshakes >= MAX_PENDING_HANDSHAKES) {
      ws.on('error', () => {});
      ws.close(CloseCode.tryAgainLater, 'too many connections in their handshake');
      this.#log('warn', 'turned a connection away: too many handshakes in progress', { remote });
      return;
    }
    const connection = new Connection(ws, 'acceptor', remote, new AcceptorHandshake(this.#handshakeConfig()), undefined, this.#options.self.id);
    this.#track(connection);
  }

  #connect(dial: Dial): void {
    dial.timer = undefined;
    if (dial.stopped || this.#state !== 'started') return;
    const { maxPayloadBytes, handshakeTimeoutMs } = this.#options;
    const ws = new WebSocket(dial.url, {
      maxPayload: maxPayloadBytes,
      perMessageDeflate: false,
      handshakeTimeout: handshakeTimeoutMs,
      followRedirects: false,
      ...(this.#ca && dial.url.startsWith('wss:') ? { ca: this.#ca } : {}),
    });
    const handshake = new DialerHandshake(this.#handshakeConfig());
    const connection = new Connection(ws, 'dialer', dial.url, handshake, dial, this.#options.self.id);
    dial.connection = connection;
    this.#track(connection);
    ws.once('open', () => {
      if (connection.phase === 'handshake' && !connection.localClose) this.#sendHandshake(connection, handshake.hello());
    });
  }

  #handshakeConfig() {
    const { clusterName: cluster, secret } = this.#options;
    return { cluster, secret, self: this.self };
  }

  /** Wires a new connection's events; common to both roles. */
  #track(connection: Connection): void {
    const { ws } = connection;
    this.#connections.add(connection);
    if (connection.role === 'acceptor') this.#pendingHandshakes++;
    connection.handshakeTimer = setTimeout(() => {
      this.#refuse(connection, CloseCode.handshakeTimeout, `handshake timeout: not complete within ${this.#options.handshakeTimeoutMs} ms`);
    }, this.#options.handshakeTimeoutMs);
    ws.on('message', (data, isBinary) => this.#onFrame(connection, data, isBinary));
    ws.on('pong', () => (connection.lastHeardAt = Date.now()));
    ws.on('error', (error) => this.#onError(connection, error));
    ws.on('close', (code, reason) => this.#onClose(connection, code, reason.toString()));
  }

  #onError(connection: Connection, error: Error): void {
    connection.error ??= error;
    const code = wsErrorCloseCode(error);
    if (code !== undefined && !connection.localClose) {
      // ws found a broken frame (too big, bad opcode, invalid UTF-8...) and is closing with `code` itself.
      connection.localClose = { code, reason: error.message };
      connection.killTimer ??= setTimeout(() => connection.ws.terminate(), CLOSE_GRACE_MS);
      connection.killTimer.unref();
      this.#reportRejection(connection, 'local', code, error.message);
      this.#dropPeerOf(connection);
    }
  }

  #onFrame(connection: Connection, data: RawData, isBinary: boolean): void {
    if (connection.phase === 'closed') return;
    // A connection we are closing delivers nothing more, except a duplicate being replaced:
    // what its peer wrote to it before switching is still that peer's, in order.
    if (connection.localClose && connection.localClose.code !== CloseCode.duplicateConnection) return;
    connection.lastHeardAt = Date.now();
    if (!isBinary) {
      this.#refuse(connection, CloseCode.textFrame, 'text frames are not accepted: the protocol is binary msgpack');
      return;
    }
    const bytes = data as Buffer; // binaryType is the default 'nodebuffer'
    if (connection.phase === 'handshake') this.#onHandshakeFrame(connection, bytes);
    else if (connection.waitFor.size > 0) connection.held.push(bytes);
    else {
      this.#onDataFrame(connection, bytes);
      this.flush();
    }
  }

  #onHandshakeFrame(connection: Connection, bytes: Buffer): void {
    let message: unknown;
    try {
      message = decode(bytes, MAX_HANDSHAKE_FRAME_BYTES);
    } catch (error) {
      this.#refuse(connection, CloseCode.undecodableFrame, `undecodable handshake frame: ${(error as Error).message}`);
      return;
    }
    try {
      const { handshake } = connection;
      if (handshake instanceof DialerHandshake) {
        const step = handshake.receive(message);
        if ('send' in step) {
          this.#sendHandshake(connection, step.send);
          this.#onProofSent(connection);
        } else {
          connection.awaitingAccept = false;
          this.#onVerified(connection, step.established);
        }
      } else {
        const step = handshake.receive(message);
        if ('send' in step) this.#sendHandshake(connection, step.send);
        else this.#onVerified(connection, step.verified, step.accept);
      }
    } catch (error) {
      if (!(error instanceof HandshakeRefused)) throw error;
      this.#refuse(connection, error.code, error.reason);
    }
  }

  /**
   * The peer proved it holds the secret. Admit the connection, or refuse it as a stale
   * incarnation or a duplicate. An acceptor sends its `accept` before the peer-up, so that the
   * peer reads it before anything sent from a peer-up listener.
   *
   * Duplicates. Both ends keep, of two connections with the same peer incarnation, the one
   * `prefers` picks. An acceptor decides before it accepts, so a connection it refuses was never
   * used by either end. A dialler learns of the acceptor's decision only with the `accept`: by then
   * the peer may already have sent values on it, so a losing connection is not dropped but
   * retired: its values are delivered while it closes, before those on the kept connection.
   */
  #onVerified(connection: Connection, peer: NodeIdentity, accept?: HandshakeMessage): void {
    if (connection.role === 'acceptor') connection.dialerId = peer.id;
    const identity: PeerIdentity = Object.freeze({ id: peer.id, incarnation: peer.incarnation, url: peer.url });
    const link = this.#peers.get(peer.id);
    if (link && peer.incarnation < link.identity.incarnation) {
      this.#refuse(
        connection,
        CloseCode.staleIncarnation,
        `stale incarnation ${peer.incarnation} of node '${peer.id}': incarnation ${link.identity.incarnation} is connected`,
      );
      return;
    }
    const current = link && link.identity.incarnation === peer.incarnation ? link.connection : undefined;
    if (current && current !== connection && !prefers(connection, current)) {
      const reason = `duplicate connection: keeping the one dialled by '${current.dialerId}'`;
      if (connection.role === 'acceptor') this.#refuse(connection, CloseCode.duplicateConnection, reason);
      else this.#retire(connection, identity, current, reason);
      return;
    }
    if (accept) this.#sendHandshake(connection, accept);
    this.#establish(connection, identity);
  }

  /**
   * A dialled connection whose proof is out: if the peer accepts it, the peer may use it before the
   * connection we have now, which then waits for it (see `#onVerified`).
   */
  #onProofSent(connection: Connection): void {
    connection.awaitingAccept = true;
    const claimed = connection.handshake.claimedPeer;
    const link = claimed && this.#peers.get(claimed.id);
    const current = link?.identity.incarnation === claimed?.incarnation ? link?.connection : undefined;
    if (current && current !== connection && !prefers(connection, current)) this.#waitFor(current, connection);
  }

  #waitFor(waiting: Connection, first: Connection): void {
    waiting.waitFor.add(first);
    first.blocks.add(waiting);
  }

  /** `connection` is closed: what waited for it goes on, in order. */
  #unblock(connection: Connection): void {
    for (const first of connection.waitFor) first.blocks.delete(connection);
    connection.waitFor.clear();
    connection.held = [];
    for (const waiting of connection.blocks) {
      waiting.waitFor.delete(connection);
      if (waiting.waitFor.size === 0) {
        const held = waiting.held;
        waiting.held = [];
        for (let i = 0; i < held.length; i++) {
          if (waiting.waitFor.size > 0) {
            waiting.held.push(...held.slice(i));
            break;
          }
          this.#onDataFrame(waiting, held[i]!);
        }
      }
    }
    connection.blocks.clear();
  }

  /** A connection the peer accepted but that loses to `kept`: deliver what arrives on it while it closes. */
  #retire(connection: Connection, identity: PeerIdentity, kept: Connection, reason: string): void {
    connection.phase = 'open';
    connection.identity = identity;
    clearTimeout(connection.handshakeTimer);
    this.#waitFor(kept, connection);
    if (connection.dial) connection.dial.peerId = identity.id;
    this.#refuse(connection, CloseCode.duplicateConnection, reason);
  }

  #establish(connection: Connection, identity: PeerIdentity): void {
    connection.phase = 'open';
    connection.identity = identity;
    connection.lastHeardAt = Date.now();
    clearTimeout(connection.handshakeTimer);
    if (connection.role === 'acceptor') this.#pendingHandshakes--;
    const dial = connection.dial;
    if (dial) {
      dial.peerId = identity.id;
      dial.attempts = 0;
      if (dial.lastFailure !== undefined) this.#log('info', `connected to ${dial.url} again`, { peer: identity.id });
      dial.lastFailure = undefined;
    }
    // A dialled connection to this peer still waiting for its accept may carry earlier values.
    for (const other of this.#connections) {
      const claimed = other.handshake.claimedPeer;
      if (other !== connection && other.awaitingAccept && claimed?.id === identity.id && claimed.incarnation === identity.incarnation && !prefers(other, connection)) {
        this.#waitFor(connection, other);
      }
    }

    const existing = this.#peers.get(identity.id);
    if (existing && existing.identity.incarnation === identity.incarnation) {
      // The same peer over a second connection that wins (see `prefers`): switch to it without
      // telling the node. The peer wrote to the old one first: this one's values wait for it.
      const previous = existing.connection;
      existing.connection = connection;
      clearTimeout(existing.switchTimer);
      existing.switchTimer = undefined;
      if (previous && previous.phase !== 'closed') {
        this.#waitFor(connection, previous);
        const reason = `duplicate connection: keeping the one dialled by '${connection.dialerId}'`;
        this.#closeConnection(previous, CloseCode.duplicateConnection, reason);
        this.#reportRejection(previous, 'local', CloseCode.duplicateConnection, reason);
      }
      this.#log('info', `switched to the connection with '${identity.id}' dialled by '${connection.dialerId}'`);
      this.#flushLink(existing);
      return;
    }
    if (existing) this.#removePeer(existing, `replaced by incarnation ${identity.incarnation}`, {
      code: CloseCode.staleIncarnation,
      reason: `replaced by incarnation ${identity.incarnation}`,
    });
    const link: PeerLink = {
      identity,
      connection,
      batch: new Uint8Array(INITIAL_BATCH_BYTES),
      batchBytes: 0,
      batchValues: 0,
      overloaded: false,
      switchTimer: undefined,
    };
    this.#peers.set(identity.id, link);
    this.#log('info', `peer up: '${identity.id}' (incarnation ${identity.incarnation}) at ${identity.url}`, { via: connection.role });
    this.#emitSafely('peer-up', identity);
  }

  #onDataFrame(connection: Connection, bytes: Buffer): void {
    const identity = connection.identity;
    if (!identity) return;
    let values: unknown[];
    try {
      values = decodeManyFromPeer(bytes, this.#options.maxPayloadBytes);
    } catch (error) {
      const reason = error instanceof DecodeError ? error.message : String(error);
      this.#refuse(connection, CloseCode.undecodableFrame, `undecodable data frame: ${reason}`);
      return;
    }
    this.#stats.framesReceived++;
    this.#stats.bytesReceived += bytes.byteLength;
    for (const value of values) {
      // A listener may close the connection or the transport; values after that are dropped.
      const link = this.#peers.get(identity.id);
      if (!link || link.identity.incarnation !== identity.incarnation || connection.phase === 'closed') return;
      if (connection.localClose && connection.localClose.code !== CloseCode.duplicateConnection) return;
      this.#stats.valuesReceived++;
      this.#emitSafely('message', link.identity, value);
    }
  }

  #sendHandshake(connection: Connection, message: HandshakeMessage): void {
    if (connection.ws.readyState !== WebSocket.OPEN) return;
    connection.ws.send(encode(message), { binary: true });
  }

  /** Close a connection for breaking the protocol: report it once, as 'rejected' and a log line. */
  #refuse(connection: Connection, code: number, reason: string): void {
    if (connection.localClose || connection.phase === 'closed') return;
    this.#closeConnection(connection, code, reason);
    this.#reportRejection(connection, 'local', code, reason);
    this.#dropPeerOf(connection);
  }

  /** The peer's connection is being closed by this node: the peer is down now, not when the close handshake ends. */
  #dropPeerOf(connection: Connection): void {
    const link = connection.identity && this.#peers.get(connection.identity.id);
    if (link && link.connection === connection && connection.localClose) {
      const { code, reason } = connection.localClose;
      this.#removePeer(link, `connection closed by this node (${code}: ${reason})`);
    }
  }

  #closeConnection(connection: Connection, code: number, reason: string): void {
    if (connection.phase === 'closed') return;
    const { ws } = connection;
    if (!connection.localClose) connection.localClose = { code, reason };
    clearTimeout(connection.handshakeTimer);
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.terminate();
      return;
    }
    if (ws.readyState === WebSocket.OPEN) ws.close(code, truncateReason(reason));
    // A far end that never answers the close frame is not waited for (ws alone would wait 30 s).
    connection.killTimer ??= setTimeout(() => ws.terminate(), CLOSE_GRACE_MS);
    connection.killTimer.unref();
  }

  #onClose(connection: Connection, code: number, remoteReason: string): void {
    connection.phase = 'closed';
    this.#connections.delete(connection);
    clearTimeout(connection.handshakeTimer);
    clearTimeout(connection.killTimer);
    if (connection.role === 'acceptor' && !connection.identity) this.#pendingHandshakes--;
    const closedByUs = connection.localClose !== undefined;
    const ending = connection.localClose ?? {
      code,
      reason: remoteReason || connection.error?.message || describeCloseCode(code),
    };
    if (!closedByUs && isRejectionCode(code)) this.#reportRejection(connection, 'remote', code, ending.reason);

    // Connections that waited for this one may now deliver what they held back.
    this.#unblock(connection);

    const identity = connection.identity;
    const link = identity ? this.#peers.get(identity.id) : undefined;
    if (link && link.connection === connection) {
      link.connection = undefined;
      if (!closedByUs && code === CloseCode.duplicateConnection) {
        // The far end keeps another connection with us that we have not seen complete yet: wait
        // for it (sends queue meanwhile) rather than flap down and up.
        link.switchTimer = setTimeout(() => {
          if (this.#peers.get(link.identity.id) === link && !link.connection) {
            this.#removePeer(link, 'its connection was closed as a duplicate and no other one completed');
          }
        }, this.#options.handshakeTimeoutMs);
        link.switchTimer.unref();
      } else {
        const how = closedByUs ? 'closed by this node' : 'closed by the peer';
        this.#removePeer(link, `connection ${how} (${ending.code}: ${ending.reason})`);
      }
    }
    if (connection.dial && connection.dial.connection === connection) this.#onDialEnded(connection.dial, connection, ending);
    connection.resolveClosed();
  }

  /** The peer is gone: drop its unsent values and tell the node; dials that deferred to this peer redial. */
  #removePeer(link: PeerLink, reason: string, close?: { code: number; reason: string }): void {
    if (this.#peers.get(link.identity.id) !== link) return;
    this.#peers.delete(link.identity.id);
    this.#dirty.delete(link);
    clearTimeout(link.switchTimer);
    const connection = link.connection;
    link.connection = undefined;
    if (connection && close) {
      this.#flushTo(link, connection); // what was sent before the close still goes, before the close frame
      this.#closeConnection(connection, close.code, close.reason);
    }
    link.batchBytes = 0;
    link.batchValues = 0;
    this.#log('info', `peer down: '${link.identity.id}' (incarnation ${link.identity.incarnation}): ${reason}`);
    this.#emitSafely('peer-down', link.identity, reason);
    for (const dial of this.#dials.values()) {
      if (dial.waitingForPeer === link.identity.id && !dial.stopped) {
        dial.waitingForPeer = undefined;
        dial.attempts = 0;
        this.#scheduleRedial(dial);
      }
    }
  }

  // --- dialling --------------------------------------------------------------------------------

  #onDialEnded(dial: Dial, connection: Connection, ending: { code: number; reason: string }): void {
    dial.connection = undefined;
    if (dial.stopped || this.#state !== 'started') return;
    if (ending.code === CloseCode.sameNodeId) {
      dial.stopped = true;
      this.#log('error', `stopped dialling ${dial.url}: ${ending.reason}`);
      return;
    }
    // Lost a duplicate race: the peer is connected over the other connection. Dialling again
    // would only lose again; dial when that peer goes down.
    const peerId = connection.claimedPeerId ?? dial.peerId;
    if (ending.code === CloseCode.duplicateConnection && peerId !== undefined && this.#peers.has(peerId)) {
      dial.waitingForPeer = peerId;
      return;
    }
    if (!connection.identity) {
      const failure = `${ending.code}: ${ending.reason}`;
      if (failure !== dial.lastFailure) {
        this.#log('warn', `cannot connect to ${dial.url} (${failure}); retrying with backoff`);
        dial.lastFailure = failure;
      }
    }
    this.#scheduleRedial(dial);
  }

  #scheduleRedial(dial: Dial): void {
    if (dial.timer || dial.connection || dial.stopped) return;
    const { reconnectMinMs, reconnectMaxMs } = this.#options;
    const ceiling = Math.min(reconnectMaxMs, reconnectMinMs * 2 ** Math.min(dial.attempts, 30));
    dial.attempts++;
    // Jitter, so nodes that lost the same peer do not all redial it in step.
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    dial.timer = setTimeout(() => this.#connect(dial), delay);
  }

  // --- sending ---------------------------------------------------------------------------------

  readonly #flushDirty = (): void => {
    this.#flushScheduled = undefined;
    for (const link of this.#dirty) this.#flushLink(link);
    this.#dirty.clear();
  };

  #flushLink(link: PeerLink): void {
    if (link.connection) this.#flushTo(link, link.connection);
  }

  /** Sends the batch as one frame; without an open connection it stays queued (while switching). */
  #flushTo(link: PeerLink, connection: Connection): void {
    if (link.batchBytes === 0 || connection.phase !== 'open' || connection.ws.readyState !== WebSocket.OPEN) return;
    // A copy: ws may keep the buffer until the socket has written it, and the batch is reused.
    const frame = link.batch.slice(0, link.batchBytes);
    this.#stats.framesSent++;
    this.#stats.valuesSent += link.batchValues;
    this.#stats.bytesSent += frame.byteLength;
    link.batchBytes = 0;
    link.batchValues = 0;
    this.#dirty.delete(link);
    connection.ws.send(frame, { binary: true }, () => this.#onWritten(link));
  }

  /** ws has no drain event; its send callback runs as data reaches the socket, which is when the backlog shrinks. */
  #onWritten(link: PeerLink): void {
    if (!link.overloaded || this.#peers.get(link.identity.id) !== link) return;
    if (unsentBytes(link) <= this.#options.lowWaterMarkBytes) {
      link.overloaded = false;
      this.#emitSafely('drain', link.identity);
    }
  }

  #overloaded(link: PeerLink, unsent: number): Overloaded {
    return new Overloaded(`the connection to node '${link.identity.id}' has ${unsent} bytes unsent (high watermark ${this.#options.highWaterMarkBytes})`);
  }

  // --- liveness and reporting ------------------------------------------------------------------

  readonly #checkLiveness = (): void => {
    const now = Date.now();
    const limit = 2 * this.#options.pingIntervalMs;
    for (const connection of this.#connections) {
      if (connection.phase !== 'open' || connection.localClose) continue;
      if (now - connection.lastHeardAt > limit) {
        connection.localClose = { code: 1006, reason: `no answer to pings for ${limit} ms` };
        this.#log('warn', `terminating the connection to '${connection.identity?.id}': no answer to pings for ${limit} ms`);
        connection.ws.terminate();
        this.#dropPeerOf(connection);
      } else if (connection.ws.readyState === WebSocket.OPEN) {
        connection.ws.ping();
      }
    }
  };

  #reportRejection(connection: Connection, by: 'local' | 'remote', code: number, reason: string): void {
    if (connection.rejectionReported) return;
    connection.rejectionReported = true;
    this.#stats.rejected++;
    const peerId = connection.claimedPeerId;
    const rejection: Rejection = { remote: connection.remote, code, reason, by, ...(peerId === undefined ? {} : { peerId }) };
    // Duplicates are routine when nodes dial each other at once; everything else deserves attention,
    // but a dialled url that keeps failing the same way is logged once (see `#onDialEnded`).
    const failure = `${code}: ${reason}`;
    const repeated = connection.dial !== undefined && connection.dial.lastFailure === failure;
    if (!repeated) {
      const level = code === CloseCode.duplicateConnection ? 'info' : 'warn';
      const verb = by === 'local' ? 'refused' : 'was refused by';
      this.#log(level, `${verb} ${connection.remote}${peerId === undefined ? '' : ` ('${peerId}')`}: ${code} ${reason}`);
    }
    if (connection.dial && code !== CloseCode.duplicateConnection) connection.dial.lastFailure = failure;
    this.#emitSafely('rejected', rejection);
  }

  /** A throwing listener is the node's bug; it must not tear down a socket handler or the process. */
  #emitSafely<K extends keyof ClusterTransportEvents>(event: K, ...args: ClusterTransportEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: ClusterTransportEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      this.#log('error', `a '${event}' listener threw`, { error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    }
  }
}

/** Of two connections with the same peer, whether `candidate` should replace `current`. */
function prefers(candidate: Connection, current: Connection): boolean {
  // Dialled by different nodes: the one dialled by the smaller id, which both ends agree on.
  if (candidate.dialerId !== current.dialerId) return (candidate.dialerId ?? '') < (current.dialerId ?? '');
  // Dialled by the same node: the newer, since that node redialled because it gave the old one up.
  return true;
}

function unsentBytes(link: PeerLink): number {
  const connection = link.connection;
  const buffered = connection && connection.ws.readyState === WebSocket.OPEN ? connection.ws.bufferedAmount : 0;
  return buffered + link.batchBytes;
}

function grow(batch: Uint8Array, used: number, needed: number): Uint8Array {
  let size = batch.byteLength * 2;
  while (size < needed) size *= 2;
  const bigger = new Uint8Array(size);
  bigger.set(batch.subarray(0, used));
  return bigger;
}

/** The close code ws itself uses for an error it found in the far end's frames, if it is one. */
function wsErrorCloseCode(error: Error): number | undefined {
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('WS_ERR_')) return undefined;
  // ws keeps the code it closes with under a private symbol; read it rather than guess it.
  for (const symbol of Object.getOwnPropertySymbols(error)) {
    const status = (error as unknown as Record<symbol, unknown>)[symbol];
    if (symbol.description === 'status-code' && typeof status === 'number') return status;
  }
  if (code.startsWith('WS_ERR_UNSUPPORTED_')) return CloseCode.messageTooBig;
  if (code === 'WS_ERR_INVALID_UTF8') return CloseCode.invalidPayload;
  return CloseCode.protocolError;
}

function describeCloseCode(code: number): string {
  switch (code) {
    case 1000: return 'normal closure';
    case 1001: return 'going away';
    case 1005: return 'closed without a code';
    case 1006: return 'connection lost';
    default: return `close code ${code}`;
  }
}

function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason) <= MAX_CLOSE_REASON_BYTES) return reason;
  let cut = reason.slice(0, MAX_CLOSE_REASON_BYTES - 3);
  while (Buffer.byteLength(cut) > MAX_CLOSE_REASON_BYTES - 3) cut = cut.slice(0, -1);
  return `${cut}...`;
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as Partial<T>;
}

function validate(options: ClusterTransportOptions & typeof DEFAULTS): void {
  const fail = (message: string) => {
    throw new InvalidArgument(`ClusterTransport: ${message}`);
  };
  if (typeof options.host !== 'string' || options.host === '') fail('host must be a non-empty string');
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) fail(`port must be 0..65535, got ${options.port}`);
  if (typeof options.clusterName !== 'string' || options.clusterName === '') fail('clusterName must be a non-empty string');
  if (typeof options.secret !== 'string' || options.secret === '') fail('secret must be a non-empty string');
  if (typeof options.self?.id !== 'string' || options.self.id === '' || options.self.id.length > 256) fail('self.id must be a string of 1..256 characters');
  if (!isIncarnation(options.self.incarnation)) fail('self.incarnation must be a non-negative safe integer');
  for (const key of ['maxPayloadBytes', 'highWaterMarkBytes', 'handshakeTimeoutMs', 'pingIntervalMs', 'reconnectMinMs', 'reconnectMaxMs'] as const) {
    if (!(Number.isFinite(options[key]) && options[key] > 0)) fail(`${key} must be a positive number, got ${options[key]}`);
  }
  if (!(Number.isFinite(options.lowWaterMarkBytes) && options.lowWaterMarkBytes >= 0)) fail('lowWaterMarkBytes must be a non-negative number');
  if (options.lowWaterMarkBytes > options.highWaterMarkBytes) fail('lowWaterMarkBytes must not exceed highWaterMarkBytes');
  if (options.reconnectMinMs > options.reconnectMaxMs) fail('reconnectMinMs must not exceed reconnectMaxMs');
}
