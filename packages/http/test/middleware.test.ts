/**
 * The session middleware over a real cluster (nodes in this process, real worker threads and
 * WebSockets, an Express app per node): cookies and their defaults, tampering, expiry, the
 * session's turns under concurrent requests, the routing policies, and req.session's methods.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CookieSigner, DurableHttpSession, HttpSession, httpSessions, sessionOf, type SessionRequest } from '@wadi/http';
import { Browser, startApps, stopAll, until } from './helpers.js';
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

afterEach(stopAll);

describe('http sessions', () => {
  it('stores a session only once it has data, in a signed HttpOnly SameSite=Lax cookie, and any node serves it', async () => {
    const [a, b, c] = await startApps(3);
    const browser = new Browser();
    const empty = await browser.get(a!.url, '/get');
    expect(empty.status).toBe(200);
    expect(empty.setCookie).toEqual([]);
    const set = await browser.post(a!.url, '/set', { name: 'alice', cart: { apple: 2 } });
    expect(set.setCookie).toHaveLength(1);
    const cookie = set.setCookie[0]!;
    expect(cookie).toMatch(/^wadi\.sid=[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax$/);
    expect(cookie).not.toContain('Secure');
    for (const app of [a!, b!, c!]) {
      const read = await browser.get(app.url, '/get');
      expect(read.body['node']).toBe(app.id);
      expect(read.body['data']).toEqual({ name: 'alice', cart: { apple: 2 } });
      expect(read.body['id']).toBe(set.body['id']);
      // An existing session's cookie is not sent again unless it must change.
      expect(read.setCookie).toEqual([]);
    }
    await browser.post(c!.url, '/unset/cart');
    expect((await browser.get(b!.url, '/get')).body['data']).toEqual({ name: 'alice' });
    // One activation, wherever it was called from: the session actor holds the data.
    const id = String(set.body['id']);
    expect((await a!.node.ref(HttpSession, `${id}/session`).peek()).data).toEqual(new Map([['name', 'alice']]));
  });

  it('rejects a tampered cookie: the request gets a new, empty session and the real one is untouched', async () => {
    const [a, b] = await startApps(2);
    const owner = new Browser();
    await owner.post(a!.url, '/set', { secret: 'owner data' });
    const [name, value] = owner.cookie!.split('=') as [string, string];
    const [id, signature] = value.split('.') as [string, string];
    const forgedSignature = signature.slice(0, -2) + (signature.endsWith('AA') ? 'BB' : 'AA');
    const attacker = new Browser();
    const otherSecret = new CookieSigner('not-the-cluster-cookie-secret').sign(id);
    for (const forged of [`${name}=${id}.${forgedSignature}`, `${name}=${id}`, `${name}=${id}.${'x'.repeat(43)}`, `${name}=${otherSecret}`]) {
      const reply = await attacker.request(b!.url, '/get', { cookie: forged });
      expect(reply.status).toBe(200);
      expect(reply.body['data']).toEqual({});
      expect(reply.body['id']).not.toBe(id);
    }
    expect(b!.sessions.stats().tampered).toBe(4);
    expect((await owner.get(b!.url, '/get')).body['data']).toEqual({ secret: 'owner data' });
  });

  it('accepts cookies signed with an older secret and re-signs them with the current one', async () => {
    const [a] = await startApps(1, { secret: ['old-secret-0123456789'] });
    const browser = new Browser();
    await browser.post(a!.url, '/set', { kept: 1 });
    const oldCookie = browser.cookie;
    a!.sessions.close();
    await stopAll();
    const [rotated] = await startApps(1, { secret: ['new-secret-0123456789', 'old-secret-0123456789'] });
    // A new cluster: the old session is gone, but the old signature is still accepted...
    const reply = await browser.request(rotated!.url, '/get', { cookie: oldCookie! });
    expect(reply.status).toBe(200);
    expect(rotated!.sessions.stats().tampered).toBe(0);
    // ...and a session with data gets a cookie signed by the new secret.
    const written = await browser.post(rotated!.url, '/set', { kept: 2 });
    expect(written.setCookie).toHaveLength(1);
    const fresh = new Browser();
    expect((await fresh.request(rotated!.url, '/get', { cookie: browser.cookie! })).body['data']).toEqual({ kept: 2 });
  });

  it('sets Secure when asked to, and when a trusted proxy says the request came over https; refreshes a cookie with a lifetime', async () => {
    const [a] = await startApps(1, { cookie: { secure: true, sameSite: 'strict', maxAgeMs: 60_000 } });
    const browser = new Browser();
    const reply = await browser.post(a!.url, '/set', { x: 1 });
    expect(reply.setCookie[0]).toMatch(/; Max-Age=60; Expires=[^;]+; HttpOnly; Secure; SameSite=Strict$/);
    // A cookie with a lifetime is sent again with every response, so it runs from the last request.
    const again = await browser.get(a!.url, '/get');
    expect(again.body['data']).toEqual({ x: 1 });
    expect(again.setCookie).toHaveLength(1);
    expect(again.setCookie[0]!.split(';')[0]).toBe(reply.setCookie[0]!.split(';')[0]);
    await stopAll();
    const [b] = await startApps(1, { trustProxy: true });
    const viaProxy = await fetch(`${b!.url}/set`, { method: 'POST', headers: { 'x-forwarded-proto': 'https', 'content-type': 'application/json' }, body: '{"x":1}' });
    expect(viaProxy.headers.getSetCookie()[0]).toContain('; Secure;');
    const plain = await fetch(`${b!.url}/set`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x":1}' });
    expect(plain.headers.getSetCookie()[0]).not.toContain('Secure');
  });

  it('an expired session starts fresh, under a new id', async () => {
    const [a, b] = await startApps(2, { idleTimeoutMs: 300 });
    const browser = new Browser();
    const first = await browser.post(a!.url, '/set', { cart: ['apple'] });
    expect((await browser.get(b!.url, '/get')).body['data']).toEqual({ cart: ['apple'] });
    const id = String(first.body['id']);
    await until('the session to expire', async () => {
      const stored = await a!.node.ref(HttpSession, `${id}/session`).peek();
      return Date.now() >= stored.expiresAt;
    });
    const after = await browser.get(b!.url, '/get');
    expect(after.body['data']).toEqual({});
    expect(after.body['id']).not.toBe(id);
    expect(b!.sessions.stats().expired).toBe(1);
    // The old id is empty now; writing again creates the new session.
    expect((await a!.node.ref(HttpSession, `${id}/session`).peek()).version).toBe(0);
    await browser.post(a!.url, '/set', { cart: ['pear'] });
    expect((await browser.get(b!.url, '/get')).body['data']).toEqual({ cart: ['pear'] });
  });

  it("serializes one client's concurrent requests by the session's turns, across nodes", async () => {
    const apps = await startApps(3);
    const browser = new Browser();
    await browser.post(apps[0]!.url, '/set', { count: 0 });
    const requests = 30;
    const replies = await Promise.all(Array.from({ length: requests }, (_, i) => browser.post(apps[i % apps.length]!.url, '/increment')));
    expect(replies.map((reply) => reply.status)).toEqual(Array(requests).fill(200));
    // Every read-modify-write saw the one before it: no lost update, each count once.
    expect(replies.map((reply) => reply.body['count']).sort((x, y) => Number(x) - Number(y))).toEqual(Array.from({ length: requests }, (_, i) => i + 1));
    expect((await browser.get(apps[1]!.url, '/get')).body['data']).toEqual({ count: requests });
  });

  it('redirect answers 307 with the app URL of the node holding the session, and that node serves it', async () => {
    const apps = await startApps(3, { routing: 'redirect' });
    const browser = new Browser();
    const created = await browser.post(apps[1]!.url, '/set', { here: true });
    expect(created.status).toBe(200);
    for (const other of [apps[0]!, apps[2]!]) {
      const reply = await browser.post(other.url, '/set', { again: other.id });
      expect(reply.status).toBe(307);
      expect(reply.location).toBe(`${apps[1]!.url}/set`);
      expect(other.sessions.stats().redirected).toBe(1);
    }
    const followed = await browser.get(apps[1]!.url, '/get');
    expect(followed.body['data']).toEqual({ here: true });
  });

  it('redirect falls back to proxying when the holder announced no app URL', async () => {
    const apps = await startApps(2, { routing: 'redirect', appUrlOf: () => undefined });
    const browser = new Browser();
    await browser.post(apps[0]!.url, '/set', { x: 1 });
    const reply = await browser.get(apps[1]!.url, '/get');
    expect(reply.status).toBe(200);
    expect(reply.body['data']).toEqual({ x: 1 });
  });

  it("migrate pulls the client's session group to the node that got the request", async () => {
    const apps = await startApps(2, { routing: 'migrate' });
    const browser = new Browser();
    const created = await browser.post(apps[0]!.url, '/set', { items: 3 });
    const id = String(created.body['id']);
    const where = async (): Promise<string | undefined> => {
      for (const app of apps) {
        const found = await app.node.cluster!.lookup(HttpSession.name, `${id}/session`);
        if (found !== 'not-owner') return found?.node;
      }
      return undefined;
    };
    expect(await where()).toBe(apps[0]!.id);
    expect((await browser.get(apps[1]!.url, '/get')).body['data']).toEqual({ items: 3 });
    await until('the session to live on the second node', async () => (await where()) === apps[1]!.id);
    await browser.post(apps[1]!.url, '/set', { items: 4 });
    expect((await browser.get(apps[0]!.url, '/get')).body['data']).toEqual({ items: 4 });
  });

  it('destroy clears the session and its cookie; regenerate moves to a new id; save stores mid-request', async () => {
    const [a, b] = await startApps(2);
    const browser = new Browser();
    await browser.post(a!.url, '/set', { user: 'alice', role: 'admin' });
    const regenerated = await browser.post(b!.url, '/regenerate');
    expect(regenerated.body['after']).not.toBe(regenerated.body['before']);
    expect(regenerated.setCookie).toHaveLength(1);
    expect((await browser.get(a!.url, '/get')).body).toMatchObject({ id: regenerated.body['after'], data: { user: 'alice' } });
    const stale = await new Browser().request(a!.url, '/get', { cookie: undefined });
    expect(stale.body['data']).toEqual({});

    const destroyed = await browser.post(a!.url, '/destroy');
    expect(destroyed.setCookie[0]).toContain('Max-Age=0');
    expect(browser.cookie).toBeUndefined();

    // A save() inside the handler is stored even though the client hangs up afterwards.
    await browser.post(a!.url, '/set', { n: 1 });
    await browser.post(b!.url, '/save-then-fail').catch(() => undefined);
    await until('the aborted request to let go of the session', async () => (await browser.get(a!.url, '/get')).status === 200);
    expect((await browser.get(a!.url, '/get')).body['data']).toEqual({ n: 1, saved: true });
  });

  it('a change that cannot be stored turns the response into an error, and the session keeps what it had', async () => {
    const [a] = await startApps(1);
    const browser = new Browser();
    await browser.post(a!.url, '/set', { kept: true });
    const reply = await browser.post(a!.url, '/unsavable');
    expect(reply.status).toBe(500);
    expect(reply.body['text']).toMatch(/could not be saved/);
    expect(a!.sessions.stats().failed).toBe(1);
    expect((await browser.get(a!.url, '/get')).body['data']).toEqual({ kept: true });
  });

  it('a request aborted while it waits for its turn gives the turn back: the session keeps working on that node', async () => {
    const [a] = await startApps(1, { waitMs: 3000 });
    const browser = new Browser();
    await browser.post(a!.url, '/set', { count: 0 });
    const slow = browser.post(a!.url, '/slow-increment', { ms: 500 });
    await sleep(100);
    const abort = new AbortController();
    const waiting = browser.request(a!.url, '/increment', { method: 'POST', signal: abort.signal }).catch((error: unknown) => error);
    await sleep(100);
    abort.abort();
    await waiting;
    expect((await slow).status).toBe(200);
    const next = await browser.post(a!.url, '/increment');
    expect(next.status).toBe(200);
    expect(next.body['count']).toBe(2);
  });

  it('destroy() and regenerate() take effect at once, also when the handler does not wait for them', async () => {
    const [a] = await startApps(1);
    const loggingOut = new Browser();
    await loggingOut.post(a!.url, '/set', { user: 'alice' });
    const oldId = String((await loggingOut.get(a!.url, '/get')).body['id']);
    const cookie = loggingOut.cookie;
    expect((await loggingOut.post(a!.url, '/destroy-nowait')).status).toBe(200);
    // The old cookie, replayed, finds nothing: the old session was not saved back.
    const replay = await new Browser().request(a!.url, '/get', { cookie });
    expect(replay.body['data']).toEqual({});
    expect((await a!.node.ref(HttpSession, `${oldId}/session`).peek()).version).toBe(0);

    const loggingIn = new Browser();
    await loggingIn.post(a!.url, '/set', { cart: ['apple'] });
    const login = await loggingIn.post(a!.url, '/login-nowait');
    expect(login.status).toBe(200);
    const { before, after } = login.body as { before: string; after: string };
    expect(after).not.toBe(before);
    // What the handler wrote after regenerate() is in the new session only, never under the old id.
    expect((await a!.node.ref(HttpSession, `${before}/session`).peek()).data.get('user')).toBeUndefined();
    expect((await loggingIn.get(a!.url, '/get')).body).toMatchObject({ id: after, data: { user: 'bob' } });
  });

  it('a request that outlives its lease does not undo the changes of the request that took the session over', async () => {
    const [a, b] = await startApps(2, { leaseMs: 300 });
    const browser = new Browser();
    await browser.post(a!.url, '/set', { count: 0 });
    const slow = browser.post(a!.url, '/slow-increment', { ms: 700 });
    await sleep(450); // past the slow request's lease
    const other = await browser.post(b!.url, '/increment');
    expect(other.body['count']).toBe(1);
    const late = await slow;
    expect(late.status).toBe(503);
    expect(String(late.body['text'])).toMatch(/taken by a later request/);
    expect((await browser.get(b!.url, '/get')).body['data']).toEqual({ count: 1 });
  });

  it('a streaming response holds its session for leaseMs at most, on its own node as elsewhere', async () => {
    const [a] = await startApps(1, { leaseMs: 300, waitMs: 1000 }); // the stream takes longer than a request may wait
    const browser = new Browser();
    await browser.post(a!.url, '/set', { count: 0 });
    const stream = browser.post(a!.url, '/stream', { ms: 1500 });
    await sleep(50);
    const next = await browser.post(a!.url, '/increment');
    expect(next.status).toBe(200);
    expect(next.body['count']).toBe(1);
    expect((await stream).status).toBe(200);
  });

  it('a session does not expire under a request that holds its turn', async () => {
    const [a] = await startApps(1, { idleTimeoutMs: 300 });
    const browser = new Browser();
    await browser.post(a!.url, '/set', { user: 'alice', count: 0 });
    expect((await browser.post(a!.url, '/slow-increment', { ms: 500 })).status).toBe(200);
    expect((await browser.get(a!.url, '/get')).body['data']).toEqual({ user: 'alice', count: 1 });
  });

  it("answers 500 to a handler that writes one of the session's own names, and stays up", async () => {
    const [a] = await startApps(1);
    const fresh = new Browser();
    for (const key of ['constructor', 'save']) {
      const reply = await fresh.post(a!.url, `/reserved/${key}`);
      expect(reply.status).toBe(500);
      expect(reply.body['text']).toMatch(new RegExp(`req\\.session\\.${key} is reserved`));
      expect(reply.setCookie).toEqual([]); // nothing was stored, so no session to point to
    }
    const browser = new Browser();
    await browser.post(a!.url, '/set', { kept: true });
    expect((await browser.post(a!.url, '/reserved/touch')).status).toBe(500);
    expect((await browser.get(a!.url, '/get')).body['data']).toEqual({ kept: true });
    expect(a!.sessions.stats().failed).toBe(3);
  });

  it('refuses cookie attributes that would break the header, and options of the wrong type', async () => {
    const [a] = await startApps(1);
    const node = a!.node;
    const secret = 'a-cookie-secret-of-some-length';
    expect(() => httpSessions({ node, secret, cookie: { path: '/\r\nX-Injected: 1' } })).toThrow(/cookie.path must start with '\/'/);
    expect(() => httpSessions({ node, secret, cookie: { path: 'relative' } })).toThrow(/cookie.path/);
    expect(() => httpSessions({ node, secret, cookie: { domain: 'example.com; Domain=evil.example' } })).toThrow(/cookie.domain must be a host name/);
    expect(() => httpSessions({ node, secret, cookie: { maxAgeMs: 1e20 } })).toThrow(/at most .*400 days/);
    expect(() => httpSessions({ node, secret, cookie: { httpOnly: 'yes' as unknown as boolean } })).toThrow(/cookie.httpOnly must be true or false/);
    expect(() => httpSessions({ node, secret, cookie: { secure: 'always' as 'auto' } })).toThrow(/cookie.secure must be/);
    expect(() => httpSessions({ node, secret, exclusive: 1 as unknown as boolean })).toThrow(/exclusive must be true or false/);
    expect(() => httpSessions({ node, secret, appUrl: 'not a url' })).toThrow(/appUrl must be an http\(s\) URL/);
    expect(() => httpSessions({ node, secret: 12345678901234567 as unknown as string })).toThrow(/cookie secret must be a string or an array of strings/);
    expect(() => httpSessions({ node, secret, idleTimeoutMS: 1000 } as never)).toThrow(/unknown option 'idleTimeoutMS' \(did you mean 'idleTimeoutMs'\?\)/);
    expect(() => httpSessions({ node, secret, cookie: { sameSite: 'lax', samesite: 'strict' } as never })).toThrow(/cookie: unknown option 'samesite'/);
    expect(() => httpSessions({ node, secret, cookie: { path: '/app', domain: '.example.com', maxAgeMs: 86_400_000 } })).not.toThrow();
  });

  it('ref() reaches other sessions of the same client group', async () => {
    const [a] = await startApps(1);
    const browser = new Browser();
    await browser.post(a!.url, '/set', { x: 1 });
    const id = String((await browser.get(a!.url, '/get')).body['id']);
    const req = { sessionID: id } as SessionRequest;
    const stored = await a!.sessions.ref(req, HttpSession, 'session').peek();
    expect(stored.data.get('x')).toBe(1);
    expect(() => a!.sessions.ref({} as SessionRequest, HttpSession, 'session')).toThrow(/did not go through/);
    expect(() => sessionOf({} as SessionRequest)).toThrow(/no session/);
  });

  it("keeps sessions in the sync-replicated type with replication 'sync', the async one by default, and refuses other modes", async () => {
    const [a, b] = await startApps(2, { replication: 'sync' });
    const browser = new Browser();
    const set = await browser.post(a!.url, '/set', { name: 'carol' });
    const id = String(set.body['id']);
    expect((await b!.node.ref(DurableHttpSession, `${id}/session`).peek()).data).toEqual(new Map([['name', 'carol']]));
    expect((await b!.node.ref(HttpSession, `${id}/session`).peek()).version).toBe(0);
    expect((await browser.get(b!.url, '/get')).body['data']).toEqual({ name: 'carol' });
    expect(DurableHttpSession.replication).toBe('sync');
    expect(HttpSession.replication).toBe('async');
    expect(() => httpSessions({ node: a!.node, secret: 'a-cookie-secret-of-some-length', replication: 'eventual' as 'sync' })).toThrow(/replication must be 'async' or 'sync', got eventual/);
  });
});
