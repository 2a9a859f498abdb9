/**
 * The actor module of @wadi/http: every node that serves HTTP sessions loads it (see
 * `HTTP_ACTORS`), so its workers can host these types.
 *
 * - `HttpSession` holds one client's `req.session` data, its expiry and the lease of the request
 *   that currently has the session's turn. Its id is `<session id>/session`, in the client's
 *   group. `DurableHttpSession` is the same with `sync` replication.
 * - `HttpApps` is the cluster-wide table `node id -> app URL` that the `redirect` policy needs to
 *   answer 307 with the URL of the node holding a session.
 */
import { defineActor } from '@wadi/core';
import { PASSIVATE_AFTER_MS, isExpired, nextExpiry } from './expiry.js';

/** The module URL to pass to `startNode({ actors: [HTTP_ACTORS, ...] })` (or `wadi node --actors`). */
export const HTTP_ACTORS = new URL('./actors.js', import.meta.url);

export interface SessionRecord {
  data: Map<string, unknown>;
  /** 0 until the first save. */
  expiresAt: number;
  /** Saves so far; 0: the session was never saved (a new session). */
  version: number;
  /** Token of the request that holds the session's turn, '' when none does. */
  lease: string;
  leaseUntil: number;
  /** Token of the request the turn was granted to last (kept after it is released): its saves are taken, an earlier holder's are not. */
  holder?: string;
}

export type OpenResult =
  | { busy: true }
  | { busy: false; data: Map<string, unknown>; isNew: boolean; expired: boolean };

function fresh(): SessionRecord {
  return { data: new Map(), expiresAt: 0, version: 0, lease: '', leaseUntil: 0 };
}

/** Forgets an expired session's data, in place. */
function expire(state: SessionRecord, now: number): boolean {
  if (!isExpired(state, now)) return false;
  state.data = new Map();
  state.expiresAt = 0;
  state.version = 0;
  return true;
}

/**
 * The session actor type, in one of two replication modes (`HttpSessionOptions.replication`):
 * the handlers are the same, the mode belongs to the type.
 */
function sessionActor(name: string, replication: 'async' | 'sync') {
  return defineActor(name, {
    state: fresh,
    idleTimeoutMs: PASSIVATE_AFTER_MS,
    replication,
    // Kept until it expires; a session never saved holds nothing worth keeping once idle.
    expiresAt: (state) => (state.version === 0 ? 0 : state.expiresAt),
    handlers: {
      /**
       * Starts a request on this session. With a `token`, the request takes the session's turn for
       * at most `leaseMs`: another token gets `{ busy: true }` until the holder saves or releases
       * (or its lease runs out, if its node died). An empty token reads without taking the turn.
       */
      open(state, token: string, idleTimeoutMs: number, leaseMs: number): OpenResult {
        const now = Date.now();
        if (token !== '' && state.lease !== '' && state.lease !== token && now < state.leaseUntil) return { busy: true };
        const expired = expire(state, now);
        if (token !== '') {
          state.lease = token;
          state.leaseUntil = now + leaseMs;
          state.holder = token;
        }
        if (state.version > 0) state.expiresAt = nextExpiry(now, idleTimeoutMs);
        return { busy: false, data: state.data, isNew: state.version === 0, expired };
      },
      /** Applies a request's changes (whole top-level values); `release` also ends its turn. */
      save(state, token: string, set: [string, unknown][], unset: string[], idleTimeoutMs: number, release: boolean): number {
        const now = Date.now();
        if (token !== '' && state.holder !== undefined && state.holder !== token) {
          // This request held the turn longer than its lease, and another request took it since:
          // writing now could undo that request's changes.
          throw Object.assign(new Error('the session was taken by a later request while this one ran longer than its lease (leaseMs): its changes are not saved'), {
            code: 'WADI_SESSION_TAKEN',
          });
        }
        // A request holding the turn keeps the session alive: it does not expire under it.
        if (token === '' || state.lease !== token) expire(state, now);
        for (const [key, value] of set) state.data.set(key, value);
        for (const key of unset) state.data.delete(key);
        state.version++;
        state.expiresAt = nextExpiry(now, idleTimeoutMs);
        if (release && state.lease === token) state.lease = '';
        return state.version;
      },
      /** Ends a request's turn without a change. */
      release(state, token: string): void {
        if (state.lease === token) state.lease = '';
      },
      /** Forgets everything: the next request with this id starts a new session. */
      destroy(state): void {
        Object.assign(state, fresh());
      },
      /** What is stored, for tools and tests. */
      peek(state) {
        return { data: state.data, expiresAt: state.expiresAt, version: state.version, leased: state.lease !== '' && Date.now() < state.leaseUntil };
      },
    },
  });
}

/**
 * Replicated `async` (the default): a response leaves once its save is sent (pipelined), before
 * the save is applied, so waiting for the backups would only delay the next request's read; a
 * crash of the session's node loses at most the changes of the last `ASYNC_LOSS_WINDOW_MS`.
 */
export const HttpSession = sessionActor('wadi.http.session', 'async');

/** Replicated `sync`, for `replication: 'sync'`: with `awaitSave`, a response leaves only once the session's backups hold its save. */
export const DurableHttpSession = sessionActor('wadi.http.session.sync', 'sync');

/** The session actor type of either mode (both have the same handlers). */
export type HttpSessionType = typeof HttpSession;

/** The id of the one `HttpApps` actor; its own group, apart from every client's. */
export const HTTP_APPS_ID = 'wadi.http/apps';

/** Entries not announced again for this long are dropped: their node is long gone. */
const APP_ENTRY_TTL_MS = 10 * 60_000;

export const HttpApps = defineActor('wadi.http.apps', {
  state: () => ({ apps: new Map<string, { url: string; at: number }>() }),
  handlers: {
    /** Node `node` serves its app at `url`; answers the whole table. */
    announce(state, node: string, url: string): [string, string][] {
      const now = Date.now();
      state.apps.set(node, { url, at: now });
      for (const [id, entry] of state.apps) if (now - entry.at > APP_ENTRY_TTL_MS) state.apps.delete(id);
      return [...state.apps].map(([id, entry]) => [id, entry.url]);
    },
    list(state): [string, string][] {
      return [...state.apps].map(([id, entry]) => [id, entry.url]);
    },
  },
});
