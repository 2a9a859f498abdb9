/**
 * The demo's web application: a small shop whose every node serves the same pages and API.
 *
 * Each visitor's session id (from the signed cookie) is a wadi group holding three sessions:
 * `<id>/session` (`req.session`: page views, the last node that served the visitor),
 * `<id>/cart` (the cart) and `<id>/profile` (the display name). They live together, on one
 * node, wherever the visitor's requests arrive.
 *
 * Besides the shop, `/_wadi/*` answers the demo's own tools: where a session lives (the bucket
 * owner's directory) and the middleware's counters.
 */
import { readFileSync } from 'node:fs';
import express, { type NextFunction, type Request, type Response } from 'express';
import { HTTP_APPS_ID, HttpApps, bucketOf, sessionOf, type HttpSessions, type WadiNode } from 'wadi';
import { cart, pricing, profile } from './actors.js';

export const CATALOG: Record<string, { name: string; cents: number }> = {
  apple: { name: 'Apples (1 kg)', cents: 320 },
  bread: { name: 'Sourdough bread', cents: 450 },
  cheese: { name: 'Comté, 200 g', cents: 690 },
  dates: { name: 'Medjool dates', cents: 540 },
  eggs: { name: 'Eggs, dozen', cents: 380 },
  figs: { name: 'Fresh figs', cents: 610 },
};

const PUBLIC = new URL('../public/', import.meta.url);

export interface ShopOptions {
  node: WadiNode;
  sessions: HttpSessions;
  /** Whether the node is on its way out: answers then ask clients not to reuse the connection. */
  draining: () => boolean;
  /** The dashboard's URL, for the page's "where is my session" link. */
  dashboard?: string | undefined;
}

/** What the shop keeps in `req.session` itself (the cart and profile are sessions of their own). */
interface ShopSession {
  views: number;
  lastNode: string;
}

export function shopApp({ node, sessions, draining, dashboard }: ShopOptions): express.Express {
  const app = express();
  const nodeId = node.cluster?.id ?? 'local';
  const shopPage = readFileSync(new URL('shop.html', PUBLIC), 'utf8');
  app.disable('x-powered-by');
  app.use((_req, res, next) => {
    res.setHeader('x-wadi-node', nodeId);
    // A leaving node: every response closes its connection, so clients move to other nodes.
    if (draining()) res.setHeader('connection', 'close');
    next();
  });
  app.use('/_wadi', wadiTools(node, sessions));
  app.use('/static', express.static(PUBLIC.pathname, { maxAge: 0 }));
  app.get('/favicon.ico', (_req, res) => void res.status(204).end());
  app.use(express.json({ limit: '16kb' }));
  app.use(sessions);

  app.get('/', (_req, res) => {
    res.type('html').send(shopPage);
  });

  /** Everything the page shows: this counts as a page view. */
  app.get('/api/me', async (req, res) => {
    const session = sessionOf<ShopSession>(req);
    session.views = (session.views ?? 0) + 1;
    session.lastNode = nodeId;
    const [items, person] = await Promise.all([sessions.ref(req, cart, 'cart').view(), sessions.ref(req, profile, 'profile').get()]);
    const quote = Object.keys(items.items).length === 0 ? 0 : await node.ref(pricing, 'any').quote(items.items);
    res.json({
      node: nodeId,
      session: session.id,
      bucket: bucketOf(session.id, node.buckets),
      views: session.views,
      name: person.name,
      cart: items.items,
      cartUpdates: items.updates,
      totalCents: catalogTotal(items.items),
      quoteCents: quote,
      catalog: CATALOG,
      dashboard: dashboard ?? null,
    });
  });

  /** Every node's shop, from the table the session middleware keeps for redirects. */
  app.get('/api/nodes', async (_req, res) => {
    const apps = await node.ref(HttpApps, HTTP_APPS_ID).list();
    res.json({ nodes: apps.map(([id, url]) => ({ id, url })).sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true })) });
  });

  app.post('/api/cart', async (req, res) => {
    const { sku, quantity } = (req.body ?? {}) as { sku?: unknown; quantity?: unknown };
    if (typeof sku !== 'string' || !(sku in CATALOG)) return void res.status(400).json({ error: `unknown product ${JSON.stringify(sku)}` });
    const count = quantity === undefined ? 1 : Number(quantity);
    if (!Number.isInteger(count) || count < 1 || count > 99) return void res.status(400).json({ error: 'quantity must be an integer from 1 to 99' });
    const total = await sessions.ref(req, cart, 'cart').add(sku, count);
    res.json({ node: nodeId, sku, quantity: total });
  });

  app.delete('/api/cart/:sku', async (req, res) => {
    const removed = await sessions.ref(req, cart, 'cart').remove(String(req.params['sku']));
    res.json({ node: nodeId, removed });
  });

  app.post('/api/profile', async (req, res) => {
    const { name } = (req.body ?? {}) as { name?: unknown };
    if (typeof name !== 'string' || name.length > 60) return void res.status(400).json({ error: 'name must be a string of at most 60 characters' });
    const visits = await sessions.ref(req, profile, 'profile').visit(name.trim());
    res.json({ node: nodeId, name: name.trim(), visits });
  });

  /** Logs out: the session and its cookie go; a new visit starts a new group. */
  app.post('/api/logout', async (req, res) => {
    await sessionOf(req).destroy();
    res.json({ node: nodeId, loggedOut: true });
  });

  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status = typeof (error as { status?: unknown })?.status === 'number' ? (error as { status: number }).status : 500;
    if (!res.headersSent) res.status(status).json({ error: (error as Error)?.message ?? String(error), code: (error as { code?: unknown })?.code });
  });
  return app;
}

function catalogTotal(items: Record<string, number>): number {
  let cents = 0;
  for (const [sku, quantity] of Object.entries(items)) cents += (CATALOG[sku]?.cents ?? 0) * quantity;
  return cents;
}

/** The demo's tools: `where` (the bucket owner's directory entry) and the middleware's counters. */
function wadiTools(node: WadiNode, sessions: HttpSessions): express.Router {
  const router = express.Router();
  router.get('/where', async (req, res) => {
    const type = String(req.query['type'] ?? '');
    const id = String(req.query['id'] ?? '');
    if (type === '' || id === '') return void res.status(400).json({ error: 'type and id are required' });
    const found = await node.cluster!.lookup(type, id);
    res.json(found === 'not-owner' ? { owner: false } : { owner: true, location: found ?? null });
  });
  router.get('/stats', (_req, res) => {
    res.json({ node: node.cluster?.id, sessions: sessions.stats() });
  });
  return router;
}
