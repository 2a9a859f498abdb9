/**
 * A cluster of real nodes in this process (worker threads, WebSockets on loopback), each serving
 * the same Express app behind the session middleware, and a cookie-keeping HTTP client.
 */
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import express, { type Request } from 'express';
import { startNode, type WadiNode } from '@wadi/node';
import { HTTP_ACTORS, httpSessions, type HttpSessionOptions, type HttpSessions, type Session } from '@wadi/http';

export const SECRET = 'cookie-secret-for-the-tests';
const CLUSTER_SECRET = 'http-test-cluster';
const BUCKETS = 64;

export interface AppNode {
  node: WadiNode;
  id: string;
  url: string;
  sessions: HttpSessions;
  server: Server;
}

const running: AppNode[] = [];

/** Every test's cluster is stopped after it by `stopAll` (afterEach). */
export async function stopAll(): Promise<void> {
  await Promise.all(
    running.splice(0).map(async (app) => {
      app.sessions.close();
      app.server.closeAllConnections();
      await new Promise((resolve) => app.server.close(resolve));
      await app.node.cluster!.close();
      await app.node.stop({ timeoutMs: 1000 });
    }),
  );
}

export type Options = Omit<HttpSessionOptions, 'node' | 'secret'> & { secret?: HttpSessionOptions['secret'] };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function session(req: Request): Session & Record<string, unknown> {
  return (req as Request & { session: Session & Record<string, unknown> }).session;
}

/** The test app: a counter, a bag of values, and the session's methods, all over `req.session`. */
function app(node: WadiNode, sessions: HttpSessions): express.Express {
  const application = express();
  application.use(express.json());
  application.use(sessions);
  application.get('/get', (req, res) => {
    res.json({ node: node.cluster!.id, id: session(req).id, data: { ...session(req) } });
  });
  application.post('/set', (req, res) => {
    Object.assign(session(req), req.body as object);
    res.json({ node: node.cluster!.id, id: session(req).id });
  });
  // A read-modify-write that yields between the read and the write, as real handlers do.
  application.post('/increment', async (req, res) => {
    const count = Number(session(req)['count'] ?? 0);
    await sleep(2);
    session(req)['count'] = count + 1;
    res.json({ count: count + 1 });
  });
  // Like /increment, but takes `ms` between the read and the write.
  application.post('/slow-increment', async (req, res) => {
    const count = Number(session(req)['count'] ?? 0);
    await sleep(Number((req.body as { ms?: number }).ms ?? 0));
    session(req)['count'] = count + 1;
    res.json({ count: count + 1 });
  });
  // A streaming response: headers now, the end after `ms`.
  application.post('/stream', async (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('started\n');
    await sleep(Number((req.body as { ms?: number }).ms ?? 0));
    res.end('done\n');
  });
  // Logout and login as handlers often write them, without waiting.
  application.post('/destroy-nowait', (req, res) => {
    session(req)['flash'] = 'bye';
    void session(req).destroy();
    res.json({});
  });
  application.post('/login-nowait', (req, res) => {
    const before = session(req).id;
    void session(req).regenerate();
    session(req)['user'] = 'bob';
    res.json({ before, after: session(req).id });
  });
  application.post('/unsavable', (req, res) => {
    session(req)['callback'] = () => 'functions cannot be stored';
    res.json({ stored: true });
  });
  application.post('/reserved/:key', (req, res) => {
    session(req)[req.params.key] = 'not data';
    res.json({ stored: true });
  });
  application.post('/unset/:key', (req, res) => {
    delete session(req)[req.params.key];
    res.json({});
  });
  application.post('/destroy', async (req, res) => {
    await session(req).destroy();
    res.json({ destroyed: true });
  });
  application.post('/regenerate', async (req, res) => {
    const before = session(req).id;
    const kept = session(req)['user'];
    await session(req).regenerate();
    session(req)['user'] = kept;
    res.json({ before, after: session(req).id });
  });
  application.post('/save-then-fail', async (req, res) => {
    session(req)['saved'] = true;
    await session(req).save();
    session(req)['unsaved'] = true;
    res.destroy();
  });
  return application;
}

export async function startApps(count: number, options: Options = {}): Promise<AppNode[]> {
  const apps: AppNode[] = [];
  for (let i = 0; i < count; i++) {
    const node = await startNode({
      actors: [HTTP_ACTORS],
      workers: 1,
      buckets: BUCKETS,
      cluster: {
        port: 0,
        seeds: apps.length === 0 ? [] : [apps[0]!.node.cluster!.url],
        secret: CLUSTER_SECRET,
        timings: { heartbeatMs: 100, suspectAfterMs: 600, downAfterMs: 300, probeIntervalMs: 100, settleMs: 20 },
        tickMs: 20,
        handoffTimeoutMs: 500,
        log: () => undefined,
      },
    });
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const sessions = httpSessions({ secret: SECRET, appUrl: url, ...options, node });
    server.on('request', app(node, sessions));
    const entry = { node, id: node.cluster!.id, url, sessions, server };
    running.push(entry);
    apps.push(entry);
  }
  await until('one layout of every node', async () => {
    const layouts = apps.map((entry) => entry.node.cluster!.layout());
    const statuses = await Promise.all(apps.map((entry) => entry.node.cluster!.status()));
    return new Set(layouts.map((layout) => layout?.epoch)).size === 1 && layouts[0]?.members.length === count && statuses.every((status) => status.buckets.handoffsPending === 0);
  });
  return apps;
}

/** Polls until `condition` holds; bounded by the test's own timeout, never asserting speed. */
export async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export interface Reply {
  status: number;
  body: Record<string, unknown>;
  setCookie: string[];
  location: string | null;
}

/** One browser: keeps the session cookie it is given, sends it back to every node. */
export class Browser {
  cookie: string | undefined;

  async request(url: string, path: string, init: { method?: string; body?: unknown; cookie?: string; signal?: AbortSignal } = {}): Promise<Reply> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const cookie = init.cookie ?? this.cookie;
    if (cookie !== undefined) headers['cookie'] = cookie;
    const response = await fetch(url + path, {
      method: init.method ?? 'GET',
      headers,
      redirect: 'manual',
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
      ...(init.signal === undefined ? {} : { signal: init.signal }),
    });
    const setCookie = response.headers.getSetCookie();
    for (const line of setCookie) {
      const pair = line.split(';')[0]!;
      this.cookie = /Max-Age=0/.test(line) ? undefined : pair;
    }
    const text = await response.text();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      body = { text };
    }
    return { status: response.status, body, setCookie, location: response.headers.get('location') };
  }

  get(url: string, path: string): Promise<Reply> {
    return this.request(url, path);
  }

  post(url: string, path: string, body: unknown = {}): Promise<Reply> {
    return this.request(url, path, { method: 'POST', body });
  }
}
