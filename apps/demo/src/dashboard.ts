/**
 * The dashboard's HTTP server: the page (`public/dashboard.html` and its script), a stream of
 * snapshots as server-sent events, the buttons' actions (add, stop, kill, restart a node; start
 * and stop the load generator) and the "where is session X" lookup.
 *
 *   GET  /                      the page
 *   GET  /events                server-sent events: one `snapshot` (JSON) per poll
 *   GET  /api/state             the latest snapshot, once
 *   GET  /api/targets           app URLs of the nodes serving now (the load generator's list)
 *   GET  /api/where?id=X        bucket, owner and location of session group X (or actor id X)
 *   POST /api/nodes             start a node;  POST /api/nodes/:id/stop | kill | restart
 *   POST /api/load              start the load generator ({ users, seconds, thinkMs });  DELETE /api/load stops it
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { HttpSession, bucketOf } from 'wadi';
import { cart, profile } from './actors.js';
import type { LoadRunner, LoadView } from './load-runner.js';
import type { Monitor, Snapshot } from './monitor.js';
import type { Supervisor } from './supervisor.js';

const PUBLIC = new URL('../public/', import.meta.url);

/** The session types of one shopper's group, by the last part of their ids. */
const GROUP_TYPES: Record<string, string> = { session: HttpSession.name, cart: cart.name, profile: profile.name };

export interface DashboardOptions {
  host: string;
  port: number;
  supervisor: Supervisor;
  monitor: Monitor;
  load: () => LoadRunner;
  routing: string;
}

export type DashboardState = Snapshot & { load: LoadView | null; routing: string };

export async function startDashboard(options: DashboardOptions): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const { supervisor, monitor } = options;
  const app = express();
  const clients = new Set<Response>();
  const state = (): DashboardState => ({ ...monitor.snapshot(), load: options.load().view(), routing: options.routing });

  app.disable('x-powered-by');
  app.use(express.json({ limit: '4kb' }));
  app.get('/', (_req, res) => res.sendFile('dashboard.html', { root: PUBLIC.pathname }));
  app.use('/static', express.static(PUBLIC.pathname, { maxAge: 0 }));
  app.get('/favicon.ico', (_req, res) => void res.status(204).end());

  app.get('/events', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write(`retry: 1000\n\nevent: snapshot\ndata: ${JSON.stringify(state())}\n\n`);
    clients.add(res);
    req.once('close', () => clients.delete(res));
  });
  monitor.on('snapshot', () => {
    if (clients.size === 0) return;
    const frame = `event: snapshot\ndata: ${JSON.stringify(state())}\n\n`;
    for (const client of clients) client.write(frame);
  });

  app.get('/api/state', (_req, res) => void res.json(state()));
  app.get('/api/targets', (_req, res) => void res.json(supervisor.serving().map((node) => node.app)));

  app.get('/api/where', async (req, res) => {
    const query = String(req.query['id'] ?? '').trim();
    if (query === '' || query.length > 200) return void res.status(400).json({ error: 'give a session id (the group, as the shop shows it) or an actor id like <group>/cart' });
    const slash = query.indexOf('/');
    const group = slash < 0 ? query : query.slice(0, slash);
    const actors = slash < 0 ? Object.keys(GROUP_TYPES).map((name) => `${group}/${name}`) : [query];
    const snapshot = monitor.snapshot();
    const bucket = bucketOf(group, snapshot.buckets);
    const ownerIds = monitor.owners();
    const owner = ownerIds?.[bucket] ?? null;
    const ownerNode = supervisor.serving().find((node) => node.id === owner);
    const located = await Promise.all(
      actors.map(async (id) => {
        const type = GROUP_TYPES[id.slice(id.lastIndexOf('/') + 1)] ?? GROUP_TYPES['session']!;
        if (ownerNode === undefined) return { id, type, location: null };
        try {
          const response = await fetch(`${ownerNode.app}/_wadi/where?type=${encodeURIComponent(type)}&id=${encodeURIComponent(id)}`, { signal: AbortSignal.timeout(2_000) });
          const body = (await response.json()) as { owner: boolean; location?: { node: string; worker: number } | null };
          return { id, type, location: body.location ?? null };
        } catch {
          return { id, type, location: null };
        }
      }),
    );
    res.json({ group, bucket, owner, actors: located });
  });

  const act = (action: (req: Request) => Promise<unknown> | unknown) => async (req: Request, res: Response, next: NextFunction) => {
    try {
      res.json({ ok: true, result: (await action(req)) ?? null });
      void monitor.poll();
    } catch (error) {
      next(error);
    }
  };
  app.post('/api/nodes', act(async () => (await supervisor.add()).id));
  app.post('/api/nodes/:id/stop', act((req) => void supervisor.stop(String(req.params['id'])).catch(() => undefined)));
  app.post('/api/nodes/:id/kill', act((req) => supervisor.kill(String(req.params['id']))));
  app.post('/api/nodes/:id/restart', act(async (req) => (await supervisor.restart(String(req.params['id']))).id));
  app.post(
    '/api/load',
    act((req) => {
      const { users = 40, seconds = 60, thinkMs = 20 } = (req.body ?? {}) as { users?: number; seconds?: number; thinkMs?: number };
      if (![users, seconds, thinkMs].every((value) => Number.isInteger(value) && value >= 0) || users < 1 || users > 2000 || seconds > 3600) {
        throw Object.assign(new Error('users: 1..2000, seconds: 0..3600 (0: until stopped), thinkMs: >= 0'), { status: 400 });
      }
      options.load().start(users, seconds, thinkMs);
    }),
  );
  app.delete('/api/load', act(() => options.load().stop()));

  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status = typeof (error as { status?: unknown })?.status === 'number' ? (error as { status: number }).status : 409;
    res.status(status).json({ ok: false, error: (error as Error)?.message ?? String(error) });
  });

  const server = createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const url = `http://${options.host}:${(server.address() as AddressInfo).port}`;
  return {
    server,
    url,
    close: async () => {
      for (const client of clients) client.end();
      clients.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
