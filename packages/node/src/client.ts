/**
 * `connect()`: calls into a cluster from a process that is not a member (a web server, a script).
 *
 * A client authenticates like a node (the cluster secret), under an id no node can have, and
 * keeps a connection to every member of the current layout, which any node it reaches sends it
 * and sends again after every change. It routes its own calls with the same `SessionRouter` as a
 * node's threads: to the bucket's owner first, then straight to where the session lives. Losing
 * a node (including the one it first reached) only costs the calls in flight to that node; later
 * calls go to the others. Members that left the layout are dropped after a grace period, so calls
 * and results still in flight from them arrive.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  CLIENT_ID_PREFIX,
  Frame,
  SessionRouter,
  isCallerFrame,
  parseFrame,
  validateLayout,
  type Layout,
} from '@wadi/cluster';
import {
  ActorSystem,
  DEFAULT_ASK_TIMEOUT_MS,
  DEFAULT_BUCKETS,
  InvalidArgument,
  checkOptionNames,
  checkTimeoutMs,
  ROUTED,
  Unavailable,
  type AnyActorDef,
  type AskEnvelope,
  type RefOf,
  type RefOptions,
  type TellEnvelope,
} from '@wadi/core';
import { ClusterTransport, type PeerIdentity } from './internal/cluster-transport.js';

export interface ConnectOptions {
  /** URLs of nodes to reach the cluster through (any one that answers is enough). */
  seeds: readonly string[];
  /** The cluster secret (default: the WADI_SECRET environment variable). */
  secret?: string;
  /** The cluster name the nodes were given (default 'wadi'). */
  clusterName?: string;
  /** Default ask deadline in ms (default 30 s). */
  askTimeoutMs?: number;
  /** Longest `connect()` waits for the first layout (default 10 s). */
  connectTimeoutMs?: number;
  /** A member gone from the layout stays connected this long, for results still on their way (default 30 s). */
  departedGraceMs?: number;
  /** The CA for `wss://` seeds with certificates no system CA signed. */
  tls?: { caFile: string };
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

/** Events: 'layout' (layout). */
export interface WadiClient {
  /** This client's id in the cluster. */
  readonly id: string;
  readonly events: EventEmitter;
  ref<D extends AnyActorDef>(def: D, id: string, options?: RefOptions): RefOf<D>;
  /** The layout the client routes by. */
  layout(): Layout | null;
  /** The ids of the nodes the client is connected to. */
  connectedNodes(): string[];
  /** Fails what still waits, and closes every connection. */
  close(): Promise<void>;
}

const CLIENT_THREAD = 0;

const CONNECT_OPTION_NAMES: Record<keyof Required<ConnectOptions>, true> = {
  seeds: true,
  secret: true,
  clusterName: true,
  askTimeoutMs: true,
  connectTimeoutMs: true,
  departedGraceMs: true,
  tls: true,
  log: true,
};

export async function connect(options: ConnectOptions): Promise<WadiClient> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgument('connect() needs options: { seeds, secret }');
  checkOptionNames('connect()', options, CONNECT_OPTION_NAMES);
  if (!Array.isArray(options.seeds) || options.seeds.length === 0) throw new InvalidArgument('connect() needs at least one seed url');
  const secret = options.secret ?? process.env['WADI_SECRET'];
  if (secret === undefined || secret.length === 0) throw new InvalidArgument('connect() needs the cluster secret: set WADI_SECRET (or the `secret` option)');
  checkTimeoutMs('connect(): askTimeoutMs', options.askTimeoutMs);
  checkTimeoutMs('connect(): connectTimeoutMs', options.connectTimeoutMs);
  if (options.tls !== undefined && typeof options.tls?.caFile !== 'string') throw new InvalidArgument('connect(): tls must be { caFile: string }');
  const client = new Client(options, secret);
  try {
    await client.start();
  } catch (error) {
    await client.close();
    throw error;
  }
  return client;
}

class Client implements WadiClient {
  readonly id = `${CLIENT_ID_PREFIX}client-${randomUUID()}`;
  readonly events = new EventEmitter();
  readonly #options: ConnectOptions;
  readonly #transport: ClusterTransport;
  readonly #system: ActorSystem;
  readonly #router: SessionRouter;
  readonly #log: NonNullable<ConnectOptions['log']>;
  #layout: Layout | null = null;
  /** URLs dialled, and when each left the layout (undefined while it is in it). */
  readonly #urls = new Map<string, number | undefined>();
  /** Members whose connection is down, by id: with no word that they left, they may have crashed. */
  readonly #unreachable = new Set<string>();
  /** Members that said they left (`gone`): what was sent to them is passed on, not lost. */
  readonly #departed = new Set<string>();
  /** The incarnation of each member in the latest layout: a higher one means the node restarted. */
  readonly #incarnations = new Map<string, number>();
  #ticker: NodeJS.Timeout | undefined;
  #closed = false;
  #firstLayout: (() => void) | undefined;

  constructor(options: ConnectOptions, secret: string) {
    this.#options = options;
    this.#log = options.log ?? (() => undefined);
    const incarnation = Date.now();
    this.#transport = new ClusterTransport({
      host: '127.0.0.1',
      port: 0,
      listen: false,
      clusterName: options.clusterName ?? 'wadi',
      secret,
      self: { id: this.id, incarnation },
      ...(options.tls === undefined ? {} : { tls: { caFile: options.tls.caFile } }),
      log: this.#log,
    });
    this.#router = new SessionRouter(
      { node: this.id, incarnation, thread: CLIENT_THREAD, buckets: DEFAULT_BUCKETS },
      {
        send: (node, thread, frame) => this.#transport.send(node, [Frame.Deliver, thread, frame]),
        settle: (envelope) => this.#system.receive(envelope),
        now: () => performance.now(),
        log: (message) => this.#log('warn', message),
        relays: () => this.#transport.peers().map((peer) => peer.id),
      },
    );
    this.#system = new ActorSystem({
      askTimeoutMs: options.askTimeoutMs ?? DEFAULT_ASK_TIMEOUT_MS,
      router: { route: () => ROUTED },
      transport: {
        send: (_destination, envelope) => {
          if (this.#closed) throw new Unavailable('the client is closed');
          this.#router.send(envelope as AskEnvelope | TellEnvelope);
        },
      },
    });
  }

  async start(): Promise<void> {
    const transport = this.#transport;
    transport.on('message', (peer: PeerIdentity, value: unknown) => this.#receive(peer, value));
    transport.on('peer-down', (peer: PeerIdentity) => {
      this.#unreachable.add(peer.id);
      this.#router.nodeGone(peer.id, this.#lost(peer.id));
    });
    transport.on('peer-up', (peer: PeerIdentity) => {
      this.#unreachable.delete(peer.id);
      this.#departed.delete(peer.id);
    });
    await transport.start();
    for (const seed of this.#options.seeds) {
      this.#urls.set(seed, undefined);
      transport.dial(seed);
    }
    const timeoutMs = this.#options.connectTimeoutMs ?? 10_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Unavailable(`no node of ${this.#options.seeds.join(', ')} answered with a layout within ${timeoutMs} ms`)), timeoutMs);
      this.#firstLayout = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    // Calls go straight to the members; until every one is connected they are relayed, which works
    // but costs a hop. Wait a little for the connections (never fail for them).
    const members = new Set(this.#layout!.members.map((member) => member.id));
    const deadline = performance.now() + Math.min(timeoutMs, 3000);
    while (performance.now() < deadline && this.connectedNodes().filter((id) => members.has(id)).length < members.size) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    this.#ticker = setInterval(() => this.#tick(), 250);
    this.#ticker.unref();
  }

  ref<D extends AnyActorDef>(def: D, id: string, options?: RefOptions): RefOf<D> {
    if (def.stateless) throw new InvalidArgument(`${def.name} is stateless: a client calls sessions only`);
    return this.#system.ref(def, id, options);
  }

  layout(): Layout | null {
    return this.#layout;
  }

  connectedNodes(): string[] {
    return this.#transport.peers().map((peer) => peer.id);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#ticker);
    this.#system.stop();
    await this.#transport.close();
  }

  #receive(peer: PeerIdentity, value: unknown): void {
    if (Array.isArray(value)) {
      if (value[0] !== Frame.Deliver || value.length !== 3) return;
      let frame;
      try {
        frame = parseFrame(value[2], this.#layout?.buckets ?? DEFAULT_BUCKETS);
      } catch (error) {
        this.#log('warn', `refused a frame from ${peer.id}: ${(error as Error).message}`);
        return;
      }
      if (isCallerFrame(frame)) this.#router.receive(frame);
      return;
    }
    const message = value as { t?: unknown; layout?: unknown };
    if (message?.t === 'gone') {
      // A node that left: calls for sessions cached there go through their owners from now on.
      this.#departed.add(peer.id);
      this.#router.nodeGone(peer.id);
      return;
    }
    if (message?.t !== 'commit') return;
    let layout: Layout;
    try {
      layout = validateLayout(message.layout, (message.layout as Layout | undefined)?.buckets ?? DEFAULT_BUCKETS);
    } catch (error) {
      this.#log('warn', `refused a layout from ${peer.id}: ${(error as Error).message}`);
      return;
    }
    const current = this.#layout;
    if (current !== null && (layout.cluster !== current.cluster || layout.epoch <= current.epoch)) return;
    this.#adopt(layout);
  }

  /**
   * Whether the calls this client sent to node `id` can no longer be answered: its connection is
   * down, it did not say it left, and the cluster took it out of the layout (declared it down).
   * A node that leaves says so first and passes on what it was sent; one that crashed never
   * answers, so its calls fail now (`HostLost`: they may or may not have run) instead of at their
   * deadline, and are not sent again.
   */
  #lost(id: string): boolean {
    const layout = this.#layout;
    return this.#unreachable.has(id) && !this.#departed.has(id) && layout !== null && !layout.members.some((member) => member.id === id);
  }

  #adopt(layout: Layout): void {
    this.#layout = layout;
    for (const member of layout.members) {
      // A new incarnation replaced the one this client sent calls to: those died with it.
      const before = this.#incarnations.get(member.id);
      if (before !== undefined && member.incarnation > before) this.#router.nodeGone(member.id, true);
    }
    this.#incarnations.clear();
    for (const member of layout.members) this.#incarnations.set(member.id, member.incarnation);
    for (const id of this.#unreachable) if (this.#lost(id)) this.#router.nodeGone(id, true);
    this.#router.setLayout(layout);
    const now = performance.now();
    const urls = new Set(layout.members.map((member) => member.url));
    for (const url of urls) {
      // A member back after a crash is dialled at once, not when the backoff of its downtime ends.
      if (!this.#urls.has(url)) this.#transport.dial(url);
      else this.#transport.redialNow(url);
      this.#urls.set(url, undefined);
    }
    for (const [url, leftAt] of this.#urls) if (!urls.has(url) && leftAt === undefined) this.#urls.set(url, now);
    this.events.emit('layout', layout);
    this.#firstLayout?.();
    this.#firstLayout = undefined;
  }

  #tick(): void {
    this.#router.tick();
    const now = performance.now();
    const grace = this.#options.departedGraceMs ?? 30_000;
    for (const [url, leftAt] of this.#urls) {
      if (leftAt !== undefined && now - leftAt >= grace) {
        this.#urls.delete(url);
        this.#transport.forget(url);
      }
    }
  }
}
