/**
 * `httpSessions(options)`: the `(req, res, next)` middleware (Express, Connect, or plain
 * `node:http`) that gives each client a session actor in the cluster, as `req.session`.
 *
 * Per request:
 * 1. The signed cookie names the client's session id (`cookie.ts`); none, or a bad signature,
 *    means a new id. Nothing is stored for a new session until it has data.
 * 2. The request takes the session's turn (`turns.ts`) and loads the data through the session
 *    actor, under the routing policy: `proxy` (the actor stays where it is), `migrate` (the
 *    client's whole group moves to this node) or `redirect` (a 307 to the node that holds it).
 *    An expired or unknown session starts fresh, under a new id.
 * 3. The handler reads and writes `req.session`. When it ends the response, the changed keys are
 *    saved and the turn released before the response leaves, so the client's next request, on
 *    any node, sees them. The cookie is set when the response's headers are written.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { InvalidArgument, Redirected, checkOptionNames, checkRouting, type AnyActorDef, type RefOf, type RoutingPolicy } from '@wadi/core';
import { DurableHttpSession, HttpSession, type HttpSessionType, type OpenResult } from './actors.js';
import { AppDirectory, type ActorCaller } from './app-directory.js';
import { CookieSigner, checkCookieAttributes, checkCookieName, newSessionId, readCookie, serializeCookie, type CookieAttributes } from './cookie.js';
import { DEFAULT_IDLE_TIMEOUT_MS } from './expiry.js';
import { Session, changesOf, checkStorable, fill, hasChanges, snapshotOf, type Changes, type SessionControl, type Snapshot } from './session.js';
import { TickBatch } from './tick-batch.js';
import { LocalTurns, withBackoff } from './turns.js';

export interface HttpSessionOptions {
  /** Where the sessions live: a node of the cluster (`startNode`) or a client (`connect`). */
  node: ActorCaller & { readonly cluster?: { readonly id: string } | undefined };
  /** Cookie signing secret(s): the first signs, all verify (rotation). At least 16 characters each. */
  secret: string | readonly string[];
  cookie?: {
    /** Default `wadi.sid`. */
    name?: string;
    /** Default `/`. */
    path?: string;
    domain?: string;
    /** `'auto'` (default): set `Secure` when the request came over https. */
    secure?: boolean | 'auto';
    /** Default `'lax'`. `'none'` needs `secure`. */
    sameSite?: 'lax' | 'strict' | 'none';
    /** Default true: page scripts cannot read the cookie. */
    httpOnly?: boolean;
    /** Browser lifetime of the cookie, refreshed on every response. Default: until the browser closes. */
    maxAgeMs?: number;
  };
  /** A session idle this long expires and starts fresh (default 30 min). See expiry.ts. */
  idleTimeoutMs?: number;
  /** How a request reaches a session held by another node (default `'proxy'`). */
  routing?: RoutingPolicy;
  /**
   * This node's app origin (e.g. `http://10.0.0.5:3000`), announced to the cluster so other
   * nodes can redirect to it. Needed on every node when `routing` is `'redirect'`.
   */
  appUrl?: string;
  /** Resolves a node id to its app origin instead of the announced table. */
  appUrlOf?: (node: string) => string | undefined | Promise<string | undefined>;
  /** Default true: one request at a time per session (see turns.ts). */
  exclusive?: boolean;
  /** Longest a request holds its session's turn before another may take it (default 15 s). */
  leaseMs?: number;
  /** Longest a request waits for its session's turn before a 503 (default 10 s). */
  waitMs?: number;
  /** Deadline of each call to the session actor (default 10 s). */
  callTimeoutMs?: number;
  /**
   * Wait for the final save of a request holding its session's turn before the response leaves
   * (default false: the save is pipelined; the lease it releases makes every later request of the
   * session see it; true with `replication: 'sync'`). A new session's first save is always awaited.
   */
  awaitSave?: boolean;
  /**
   * How session changes reach the session's backups (docs/cluster.md "Replication"): `async`
   * (default: a crash of the node holding a session loses at most its last `ASYNC_LOSS_WINDOW_MS`
   * of changes) or `sync` (a save is acknowledged, and with `awaitSave` the response sent, only
   * once the backups hold it; costs a round trip to a backup per request).
   */
  replication?: 'async' | 'sync';
  /** Store (and set the cookie of) new sessions even without data (default false). */
  saveUninitialized?: boolean;
  /** Believe `X-Forwarded-Proto` for `secure: 'auto'` (default false). */
  trustProxy?: boolean;
}

export interface HttpSessionStats {
  requests: number;
  /** New sessions stored. */
  created: number;
  /** Cookies whose signature no secret verified. */
  tampered: number;
  /** Sessions found expired (or unknown) and started fresh. */
  expired: number;
  redirected: number;
  /** Asks for a lease held by a request on another node. */
  busyRetries: number;
  /** Requests answered with an error because the session could not be loaded or saved. */
  failed: number;
}

/** A request that went through the middleware. */
export type SessionRequest = IncomingMessage & { session?: Session | undefined; sessionID?: string | undefined; originalUrl?: string };

type Next = (error?: unknown) => void;

/**
 * `req.session`, typed: `sessionOf<{ visits: number }>(req).visits`. (Plain JavaScript can use
 * `req.session` directly.) Throws if the request did not go through the middleware.
 */
export function sessionOf<T extends object = Record<string, unknown>>(req: IncomingMessage): Session & Partial<T> {
  const session = (req as SessionRequest).session;
  if (session === undefined) throw new InvalidArgument('this request has no session: it did not go through the wadi session middleware, or the session was destroyed');
  return session as Session & Partial<T>;
}

export interface HttpSessions {
  (req: IncomingMessage, res: ServerResponse, next: Next): void;
  /**
   * A ref to actor `def` with id `<session id>/<name>`: one of this client's sessions, in its
   * group. Using it keeps a new session (its cookie is sent), so the client finds the actor again.
   */
  ref<D extends AnyActorDef>(req: IncomingMessage, def: D, name: string): RefOf<D>;
  stats(): HttpSessionStats;
  /**
   * Saves the request's session now and ends its turn, as ending the response would: for
   * frameworks that write the headers before they end the response (Fastify's `onSend`), so a
   * save that fails can still become the response. Rejects with the save's error (with the HTTP
   * `status` to answer). Resolves at once for a request that did not go through the middleware.
   */
  finish(req: IncomingMessage): Promise<void>;
  /** Stops announcing this node's app URL. */
  close(): void;
}

/**
 * Each request's session handling (for `ref()` and `finish()`), kept on the request itself. Not in
 * a WeakMap: an entry per request in a long-lived WeakMap, keyed by a young object, is an
 * ephemeron every scavenge must trace, and under load that made the garbage collector's pauses,
 * and so the latency tail, about a third longer (measured).
 */
const CONTROL = Symbol('wadi.http.requestSession');
type ControlledRequest = IncomingMessage & { [CONTROL]?: RequestSession };

const DEFAULT_LEASE_MS = 15_000;
const DEFAULT_WAIT_MS = 10_000;
const DEFAULT_CALL_TIMEOUT_MS = 10_000;
const SESSION_SUFFIX = 'session';

/**
 * Lease tokens only need to differ from every other request's, never to be secret (no client
 * sees them): a random prefix per process and a counter.
 */
const TOKEN_PREFIX = randomBytes(9).toString('base64url');
let tokens = 0;
function nextToken(): string {
  return `${TOKEN_PREFIX}${(++tokens).toString(36)}`;
}

/** What every request of one middleware shares. */
interface Shared {
  caller: ActorCaller;
  signer: CookieSigner;
  cookieName: string;
  cookie: Omit<CookieAttributes, 'secure'> & { secure: boolean | 'auto' };
  idleTimeoutMs: number;
  routing: RoutingPolicy;
  exclusive: boolean;
  leaseMs: number;
  waitMs: number;
  callTimeoutMs: number;
  saveUninitialized: boolean;
  awaitSave: boolean;
  /** The session actor type of the chosen replication mode. */
  sessionType: HttpSessionType;
  trustProxy: boolean;
  appUrlOf: (node: string) => Promise<string | undefined>;
  turns: LocalTurns;
  batch: TickBatch;
  stats: HttpSessionStats;
}

export function httpSessions(options: HttpSessionOptions): HttpSessions {
  const shared = configure(options);
  const directory = new AppDirectory(
    options.node,
    options.appUrl === undefined || options.node.cluster === undefined ? undefined : { node: options.node.cluster.id, url: trimSlash(options.appUrl) },
  );
  const custom = options.appUrlOf;
  shared.appUrlOf = custom === undefined ? (node) => directory.urlOf(node) : async (node) => custom(node);

  const middleware = ((req: IncomingMessage, res: ServerResponse, next: Next): void => {
    const request = req as SessionRequest;
    // Mounted twice (or on a sub-app): the first one already did the work.
    if (request.session !== undefined) return next();
    shared.stats.requests++;
    const control = new RequestSession(shared, request, res);
    (req as ControlledRequest)[CONTROL] = control;
    control.start().then(
      (proceed) => {
        if (proceed) next();
      },
      (error: unknown) => {
        shared.stats.failed++;
        next(withStatus(error));
      },
    );
  }) as HttpSessions;
  middleware.ref = (req, def, name) => {
    const id = (req as SessionRequest).sessionID;
    if (id === undefined) throw new InvalidArgument('this request did not go through the wadi session middleware');
    // The group is in use: a new session must be kept (and its cookie sent), or the client
    // could never reach this actor again.
    (req as ControlledRequest)[CONTROL]?.keep();
    return options.node.ref(def, `${id}/${name}`);
  };
  middleware.stats = () => ({ ...shared.stats });
  middleware.finish = async (req) => (req as ControlledRequest)[CONTROL]?.finishNow();
  middleware.close = () => directory.close();
  return middleware;
}

const OPTION_NAMES: Record<keyof Required<HttpSessionOptions>, true> = {
  node: true,
  secret: true,
  cookie: true,
  idleTimeoutMs: true,
  routing: true,
  appUrl: true,
  appUrlOf: true,
  exclusive: true,
  leaseMs: true,
  waitMs: true,
  callTimeoutMs: true,
  awaitSave: true,
  replication: true,
  saveUninitialized: true,
  trustProxy: true,
};

const COOKIE_OPTION_NAMES: Record<keyof Required<NonNullable<HttpSessionOptions['cookie']>>, true> = {
  name: true,
  path: true,
  domain: true,
  secure: true,
  sameSite: true,
  httpOnly: true,
  maxAgeMs: true,
};

function configure(options: HttpSessionOptions): Shared {
  if (typeof options?.node?.ref !== 'function') throw new InvalidArgument('httpSessions needs `node`: a started node or a connected client');
  checkOptionNames('httpSessions()', options, OPTION_NAMES);
  checkOptionNames('httpSessions(): cookie', options.cookie, COOKIE_OPTION_NAMES);
  const cookie = options.cookie ?? {};
  const cookieName = cookie.name ?? 'wadi.sid';
  checkCookieName(cookieName);
  checkRouting('httpSessions: routing', options.routing);
  const replication = options.replication ?? 'async';
  if (replication !== 'async' && replication !== 'sync') throw new InvalidArgument(`httpSessions: replication must be 'async' or 'sync', got ${String(replication)}`);
  const sameSite = cookie.sameSite ?? 'lax';
  if (!['lax', 'strict', 'none'].includes(sameSite)) throw new InvalidArgument(`cookie.sameSite must be 'lax', 'strict' or 'none', got ${String(sameSite)}`);
  if (sameSite === 'none' && cookie.secure === false) throw new InvalidArgument("cookie.sameSite 'none' needs a Secure cookie: browsers drop it otherwise");
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    if (!(typeof value === 'number' && value > 0 && Number.isFinite(value))) throw new InvalidArgument(`httpSessions: ${name} must be a positive number, got ${JSON.stringify(value)}`);
    return value;
  };
  const flag = (name: string, value: unknown, fallback: boolean): boolean => {
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') throw new InvalidArgument(`httpSessions: ${name} must be true or false, got ${JSON.stringify(value)}`);
    return value;
  };
  if (cookie.secure !== undefined && cookie.secure !== 'auto' && typeof cookie.secure !== 'boolean') {
    throw new InvalidArgument(`cookie.secure must be true, false or 'auto', got ${JSON.stringify(cookie.secure)}`);
  }
  if (options.appUrl !== undefined && !isHttpUrl(options.appUrl)) throw new InvalidArgument(`httpSessions: appUrl must be an http(s) URL, got ${JSON.stringify(options.appUrl)}`);
  if (options.appUrlOf !== undefined && typeof options.appUrlOf !== 'function') throw new InvalidArgument('httpSessions: appUrlOf must be a function');
  try {
    checkCookieAttributes({ path: cookie.path ?? '/', domain: cookie.domain, maxAgeMs: cookie.maxAgeMs });
  } catch (error) {
    throw new InvalidArgument(`httpSessions: ${(error as Error).message}`);
  }
  return {
    caller: options.node,
    signer: new CookieSigner(options.secret),
    cookieName,
    cookie: {
      path: cookie.path ?? '/',
      domain: cookie.domain,
      httpOnly: flag('cookie.httpOnly', cookie.httpOnly, true),
      sameSite,
      secure: cookie.secure ?? 'auto',
      maxAgeMs: cookie.maxAgeMs === undefined ? undefined : positive('cookie.maxAgeMs', cookie.maxAgeMs, 0),
    },
    idleTimeoutMs: positive('idleTimeoutMs', options.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS),
    routing: options.routing ?? 'proxy',
    exclusive: flag('exclusive', options.exclusive, true),
    leaseMs: positive('leaseMs', options.leaseMs, DEFAULT_LEASE_MS),
    waitMs: positive('waitMs', options.waitMs, DEFAULT_WAIT_MS),
    callTimeoutMs: positive('callTimeoutMs', options.callTimeoutMs, DEFAULT_CALL_TIMEOUT_MS),
    saveUninitialized: flag('saveUninitialized', options.saveUninitialized, false),
    awaitSave: flag('awaitSave', options.awaitSave, replication === 'sync'),
    sessionType: replication === 'sync' ? DurableHttpSession : HttpSession,
    trustProxy: flag('trustProxy', options.trustProxy, false),
    appUrlOf: async () => undefined,
    turns: new LocalTurns(),
    batch: new TickBatch(),
    stats: { requests: 0, created: 0, tampered: 0, expired: 0, redirected: 0, busyRetries: 0, failed: 0 },
  };
}

/** One request's session: loading, the methods of `req.session`, the cookie, saving at the end. */
class RequestSession implements SessionControl {
  readonly #shared: Shared;
  readonly #req: SessionRequest;
  readonly #res: ServerResponse;
  #id = '';
  /** The lease token, '' when this request holds no lease on the stored session. */
  #token = '';
  #snapshot: Snapshot = new Map();
  /** The cookie named no stored session: it gets one if it is stored. */
  #isNew = true;
  /** The request came with a valid cookie (so clearing it after destroy means something). */
  #hadCookie = false;
  /** Re-sign the cookie: an older secret signed it. */
  #staleSignature = false;
  #stored = false;
  #touched = false;
  #destroyed = false;
  #releaseLocal: (() => void) | undefined;
  /** Destroys this request sent, which its response waits for. */
  #controls: Promise<void> | undefined;
  /** `res.end` was called: the session's methods are refused from then on. */
  #ending = false;
  /** When this request's lease was granted (`performance.now()`). */
  #leasedAt = 0;
  /** Set when the response ends: whether a new session is stored (and so gets a cookie). */
  #storeNew: boolean | undefined;
  #cookieSent = false;
  #headersHooked = false;
  #done = false;

  constructor(shared: Shared, req: SessionRequest, res: ServerResponse) {
    this.#shared = shared;
    this.#req = req;
    this.#res = res;
  }

  /** Loads the session; false when the request was answered here (a redirect). */
  async start(): Promise<boolean> {
    const shared = this.#shared;
    const value = readCookie(this.#req.headers.cookie, shared.cookieName);
    const verified = value === undefined ? undefined : shared.signer.verify(value);
    if (value !== undefined && verified === undefined) shared.stats.tampered++;
    let data: ReadonlyMap<string, unknown> = new Map();
    if (verified !== undefined) {
      this.#hadCookie = true;
      this.#staleSignature = verified.stale;
      this.#id = verified.id;
      this.#hook();
      const opened = await this.#open(verified.id);
      if (opened === 'redirected') return false;
      if (this.#done) {
        // The client went away while this request waited for its turn or its session: give both
        // back now (the close handler found nothing to give back then), and run no handler.
        this.#releaseLease();
        this.#finishLocal();
        return false;
      }
      if (opened.isNew) {
        // Expired, or never stored: a fresh session under a fresh id, so the old group's other
        // sessions (and anyone who learned the old id) do not carry over.
        shared.stats.expired++;
        this.#releaseLease();
        this.#id = newSessionId();
      } else {
        this.#isNew = false;
        data = opened.data;
      }
    } else {
      this.#id = newSessionId();
      this.#hook();
    }
    this.#install(data);
    return true;
  }

  // SessionControl: the methods of req.session

  async save(session: Session): Promise<void> {
    this.#check(session);
    await this.#store(false);
  }

  async reload(session: Session): Promise<void> {
    this.#check(session);
    if (this.#isNew && !this.#stored) return this.#install(new Map());
    const opened = await this.#call().open(this.#token, this.#shared.idleTimeoutMs, this.#shared.leaseMs);
    if (opened.busy) throw new InvalidArgument('the session was taken by another request (its lease ran out)');
    if (this.#token !== '') this.#leasedAt = performance.now();
    this.#install(opened.isNew ? new Map() : opened.data);
  }

  destroy(session: Session): Promise<void> {
    this.#check(session);
    // At once, as express-session does: a handler that does not wait (`destroy(); res.end()`)
    // must not save the old session back. The destroy clears its lease with everything else.
    const ref = this.#call();
    this.#destroyed = true;
    if (this.#hadCookie) this.#hookHeaders(); // to clear the cookie
    this.#token = '';
    this.#req.session = undefined;
    return this.#control(() => ref.destroy());
  }

  regenerate(session: Session): Promise<void> {
    this.#check(session);
    // The new session is `req.session` at once, so what a handler writes next (`regenerate();
    // req.session.user = ...`) never lands in the old, possibly fixated, id.
    const old = !this.#isNew || this.#stored ? this.#call() : undefined;
    this.#releaseLease();
    this.#id = newSessionId();
    this.#isNew = true;
    this.#stored = false;
    this.#destroyed = false;
    this.#install(new Map());
    return old === undefined ? Promise.resolve() : this.#control(() => old.destroy());
  }

  /**
   * Sends a destroy behind whatever this request queued before (the tick batch keeps order), and
   * has the response wait for it: if it fails, the response says so rather than the handler's answer.
   */
  #control(call: () => Promise<void>): Promise<void> {
    const sent = this.#shared.batch.ask(call);
    const previous = this.#controls;
    this.#controls = previous === undefined ? sent : Promise.all([previous, sent]).then(() => undefined);
    this.#controls.catch(() => undefined); // observed by #finish; a response that never ends must not crash the process
    return sent;
  }

  touch(session: Session): void {
    this.#check(session);
    this.#touched = true;
  }

  /** A new session is stored even without data (another session of its group is in use). */
  keep(): void {
    if (this.#isNew && !this.#stored && !this.#done) this.#touched = true;
  }

  // internals

  #call(id = this.#id, routing?: RoutingPolicy): RefOf<HttpSessionType> {
    return this.#shared.caller.ref(this.#shared.sessionType, `${id}/${SESSION_SUFFIX}`, {
      timeoutMs: this.#shared.callTimeoutMs,
      ...(routing === undefined ? {} : { routing }),
    });
  }

  /** Takes the session's turn and reads it, or answers with a redirect. */
  async #open(id: string): Promise<Exclude<OpenResult, { busy: true }> | 'redirected'> {
    const shared = this.#shared;
    if (shared.exclusive) {
      this.#releaseLocal = await shared.turns.acquire(id, shared.waitMs, shared.leaseMs);
      this.#token = nextToken();
    }
    let routing = shared.routing;
    const attempt = async (): Promise<Exclude<OpenResult, { busy: true }> | 'redirected' | 'busy'> => {
      try {
        const ref = this.#call(id, routing);
        const token = this.#token;
        const opened = await shared.batch.ask(() => ref.open(token, shared.idleTimeoutMs, shared.leaseMs));
        return opened.busy ? 'busy' : opened;
      } catch (error) {
        if (!(error instanceof Redirected)) throw error;
        const url = await shared.appUrlOf(error.node);
        // A node whose app URL nobody announced cannot be redirected to: serve from here.
        if (url === undefined) routing = 'proxy';
        else {
          this.#redirect(url);
          return 'redirected';
        }
        return attempt();
      }
    };
    try {
      const opened = await withBackoff(attempt, shared.waitMs, () => shared.stats.busyRetries++);
      this.#leasedAt = performance.now();
      return opened;
    } catch (error) {
      // An open that timed out may still have taken the lease: give it back.
      this.#releaseLease();
      this.#finishLocal();
      throw error;
    }
  }

  #redirect(url: string): void {
    this.#shared.stats.redirected++;
    this.#token = '';
    this.#done = true;
    this.#finishLocal();
    const res = this.#res;
    res.statusCode = 307;
    res.setHeader('location', trimSlash(url) + (this.#req.originalUrl ?? this.#req.url ?? '/'));
    res.setHeader('cache-control', 'no-store');
    res.end();
  }

  #install(data: ReadonlyMap<string, unknown>): void {
    if (this.#isNew || this.#staleSignature || this.#shared.cookie.maxAgeMs !== undefined) this.#hookHeaders();
    const session = this.#req.session;
    if (session !== undefined && session.id === this.#id) fill(session, data);
    else {
      this.#req.session = new Session(this.#id, this, data);
      this.#req.sessionID = this.#id;
    }
    this.#snapshot = snapshotOf(data);
  }

  #check(session: Session): void {
    if (this.#done || this.#ending) throw new InvalidArgument('the response has ended: this session can no longer be used');
    if (this.#destroyed || this.#req.session !== session) throw new InvalidArgument('this session was destroyed or replaced');
  }

  /** Saves the changes; `release` ends the request's turn too. */
  async #store(release: boolean, changes?: Changes): Promise<void> {
    const session = this.#req.session;
    if (session === undefined) return;
    changes ??= changesOf(session, this.#snapshot);
    // Before anything is sent: a pipelined save could not report it.
    checkStorable(changes);
    const shared = this.#shared;
    if (this.#isNew && !this.#stored) {
      if (!hasChanges(changes) && !this.#touched && !shared.saveUninitialized) return;
      shared.stats.created++;
    }
    // Fixed now: the calls leave later (tick-batch.ts), when this request may have a new id.
    const ref = this.#call();
    const token = this.#token;
    const { set, unset } = changes;
    // Past half its lease another request may take the turn, and the save would be refused: it
    // is awaited then, so the response can say so.
    const mayHaveLost = token !== '' && performance.now() - this.#leasedAt > shared.leaseMs / 2;
    if (release && token !== '' && !shared.awaitSave && !mayHaveLost) {
      // Pipelined: the response need not wait. The save also ends this request's lease, so any
      // later request for the session, from any node, waits until it has been applied (and this
      // process's next one is sent after it, on the same ordered path).
      await shared.batch.send(() => ref.tell.save(token, set, unset, shared.idleTimeoutMs, release));
    } else {
      await shared.batch.ask(() => ref.save(token, set, unset, shared.idleTimeoutMs, release));
    }
    this.#stored = true;
    this.#touched = false;
    if (release) this.#token = '';
    // The request goes on (an explicit save()): later changes are measured from here.
    else this.#snapshot = snapshotOf(session);
  }

  /** Wraps `res.end` (saving first); gives the turn back if the client goes away first. */
  #hook(): void {
    const res = this.#res;
    const end = res.end;
    res.end = ((...args: unknown[]) => {
      const finishEnd = (): void => void (end as (...a: unknown[]) => ServerResponse).apply(res, args);
      if (this.#ending || this.#done) {
        finishEnd();
        return res;
      }
      this.finishNow().then(finishEnd, (error: unknown) => {
        if (res.headersSent) return finishEnd();
        // The changes are not stored: say so instead of the handler's answer.
        for (const name of res.getHeaderNames()) res.removeHeader(name);
        res.statusCode = withStatus(error).status;
        res.setHeader('content-type', 'text/plain; charset=utf-8');
        res.setHeader('retry-after', '1');
        (end as (chunk: string) => void).call(res, `the session could not be saved: ${(error as Error)?.message ?? String(error)}\n`);
      })
        // Even the answer could not be written: the connection goes, the process stays up.
        .catch((error: unknown) => res.destroy(error instanceof Error ? error : new Error(String(error))));
      return res;
    }) as typeof res.end;
    // 'close' comes once: `on` spares the wrapper `once` allocates.
    res.on('close', () => {
      // The client went away before the response ended: give the turn back, store nothing.
      if (!this.#ending && !this.#done) {
        this.#done = true;
        this.#releaseLease();
        this.#finishLocal();
      }
    });
  }

  /**
   * Wraps `res.writeHead` to add the session's cookie, for a response that may need one: a new
   * session, a cookie an older secret signed or that has a lifetime to refresh, a destroy. Most
   * requests (of a session whose cookie the client holds) need none and leave `writeHead` alone.
   */
  #hookHeaders(): void {
    if (this.#headersHooked) return;
    this.#headersHooked = true;
    const res = this.#res;
    const writeHead = res.writeHead;
    res.writeHead = ((...args: unknown[]) => {
      const cookie = this.#setCookie();
      // Headers given to writeHead replace those set before: keep the session's cookie in them.
      if (cookie !== undefined) withCookieIn(args, cookie);
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(res, args);
    }) as typeof res.writeHead;
  }

  /** Saves and ends the turn (once), before the response is written; see `HttpSessions.finish`. */
  async finishNow(): Promise<void> {
    if (this.#ending || this.#done) return;
    this.#ending = true;
    try {
      await this.#finish();
    } catch (error) {
      this.#shared.stats.failed++;
      // Nothing was stored: a new session gets no cookie.
      this.#storeNew = this.#stored;
      throw withStatus(error);
    }
  }

  async #finish(): Promise<void> {
    try {
      // A destroy (or regenerate) the handler did not wait for: its outcome is the response's too.
      if (this.#controls !== undefined) await this.#controls;
      if (this.#destroyed) return;
      const session = this.#req.session;
      if (session === undefined) return;
      const changes = changesOf(session, this.#snapshot);
      if (this.#isNew && !this.#stored) {
        // A new session is stored only with data, and only if its cookie can still be sent.
        const wanted = this.#shared.saveUninitialized || this.#touched || hasChanges(changes);
        this.#storeNew = wanted && (!this.#res.headersSent || this.#cookieSent);
        if (this.#storeNew) await this.#store(true, changes);
        return;
      }
      // Unchanged: the open already moved the expiry on; the lease is released below, unawaited.
      if (this.#touched || hasChanges(changes)) await this.#store(true, changes);
    } finally {
      this.#done = true;
      this.#releaseLease();
      this.#finishLocal();
    }
  }

  /** Sets the session's cookie on the response if it needs one; returns it. */
  #setCookie(): string | undefined {
    const res = this.#res;
    const shared = this.#shared;
    let header: string | undefined;
    if (this.#destroyed) {
      if (this.#hadCookie) header = serializeCookie(shared.cookieName, '', { ...this.#attributes(), maxAgeMs: 0 });
    } else if (this.#req.session !== undefined) {
      const storesNew = this.#storeNew ?? (this.#stored || this.#shared.saveUninitialized || this.#touched || this.#changedSafely(this.#req.session));
      const send = this.#isNew ? storesNew : this.#staleSignature || shared.cookie.maxAgeMs !== undefined;
      if (send) header = serializeCookie(shared.cookieName, shared.signer.sign(this.#id), this.#attributes());
    }
    if (header === undefined) return undefined;
    this.#cookieSent = true;
    const existing = res.getHeader('set-cookie');
    const list = existing === undefined ? [] : Array.isArray(existing) ? existing : [String(existing)];
    res.setHeader('set-cookie', [...list, header]);
    return header;
  }

  /** Whether the handler changed the session so far; false for data that cannot be saved (the save says why). */
  #changedSafely(session: Session): boolean {
    try {
      return hasChanges(changesOf(session, this.#snapshot));
    } catch {
      return false;
    }
  }

  #attributes(): CookieAttributes {
    const { secure, ...rest } = this.#shared.cookie;
    return { ...rest, secure: secure === 'auto' ? this.#isHttps() : secure };
  }

  #isHttps(): boolean {
    if ((this.#req.socket as TLSSocket | undefined)?.encrypted === true) return true;
    if (!this.#shared.trustProxy) return false;
    const proto = this.#req.headers['x-forwarded-proto'];
    const first = (Array.isArray(proto) ? proto[0] : proto)?.split(',')[0]?.trim().toLowerCase();
    return first === 'https';
  }

  /** Gives the lease back without waiting: the next request's open comes after it on this path. */
  #releaseLease(): void {
    const token = this.#token;
    if (token === '') return;
    this.#token = '';
    // If it cannot be sent (the node is stopping), the lease runs out by itself. The ref is taken
    // now: the call leaves later, when this request may have moved to a new id.
    const ref = this.#call();
    this.#shared.batch.send(() => ref.tell.release(token)).catch(() => undefined);
  }

  #finishLocal(): void {
    const release = this.#releaseLocal;
    this.#releaseLocal = undefined;
    release?.();
  }
}

/** The error with the HTTP status Express's error handler answers with: 503 for the cluster's own failures. */
function withStatus(error: unknown): Error & { status: number } {
  const base = error instanceof Error ? error : new Error(String(error));
  const existing = (base as { status?: unknown }).status;
  if (typeof existing === 'number' && existing >= 400 && existing < 600) return base as Error & { status: number };
  const code = (base as { code?: unknown }).code;
  const status = code === 'WADI_INVALID_ARGUMENT' || code === 'WADI_NOT_SERIALIZABLE' ? 500 : typeof code === 'string' && code.startsWith('WADI_') ? 503 : 500;
  try {
    return Object.assign(base, { status });
  } catch {
    return Object.assign(new Error(base.message, { cause: base }), { status });
  }
}

/**
 * Adds `cookie` to a `Set-Cookie` given in `writeHead`'s headers argument (an object, or a flat
 * array of names and values), which would otherwise replace the one set on the response.
 */
function withCookieIn(args: unknown[], cookie: string): void {
  const headers = args[args.length - 1];
  if (Array.isArray(headers)) {
    const flat = headers as unknown[];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      if (typeof flat[i] === 'string' && (flat[i] as string).toLowerCase() === 'set-cookie') {
        flat.push(flat[i], cookie);
        return;
      }
    }
  } else if (typeof headers === 'object' && headers !== null) {
    const record = headers as Record<string, unknown>;
    const name = Object.keys(record).find((key) => key.toLowerCase() === 'set-cookie');
    if (name === undefined) return;
    const value = record[name];
    const list = value === undefined ? [] : Array.isArray(value) ? value.map(String) : [String(value)];
    if (!list.includes(cookie)) record[name] = [...list, cookie];
  }
}

function isHttpUrl(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

function trimSlash(url: string): string {
  return url.endsWith('/') ? url.slice(0, -1) : url;
}
