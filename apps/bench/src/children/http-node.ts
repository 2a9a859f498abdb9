/**
 * Child process for the HTTP session benchmarks: one process serving the same request handler
 * twice, so figure and baseline run in the same 3 processes:
 * - on `wadiPort`: a cluster member with wadi's session middleware (`httpSessions`);
 * - on `redisPort`: express-session with a connect-redis store on the bench's Redis server.
 *
 * The handler (`POST /hit`) reads the session's counter and writes it back incremented, and
 * answers with the new value.
 *
 * usage: fork(http-node.js, [JSON.stringify(HttpNodeConfig)]); sends `{ ready: {...} }` or
 * `{ failed }`, answers `{ id, op: 'status' }` with the node's status. Exits when the IPC channel
 * goes (the bench kills it anyway).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Request, type Response } from 'express';
import session from 'express-session';
import { RedisStore } from 'connect-redis';
import { createClient } from 'redis';
import { startNode } from '@wadi/node';
import { HTTP_ACTORS, httpSessions } from '@wadi/http';

export interface HttpNodeConfig {
  seeds: string[];
  secret: string;
  cookieSecret: string;
  workers: number;
  buckets: number;
  redisUrl: string;
}

export type HttpNodeMessage =
  | { ready: { id: string; url: string; wadi: string; redis: string } }
  | { failed: string }
  | { id: number; value: unknown }
  | { id: number; error: string };

const send = (message: HttpNodeMessage): void => {
  process.send?.(message);
};

/** The work per request, the same for both stacks: read the counter, write it back plus one. */
function hit(req: Request, res: Response): void {
  // express-session and wadi both put the session on req.session.
  const data = (req as unknown as { session: { hits?: number } }).session;
  const hits = (data.hits ?? 0) + 1;
  data.hits = hits;
  res.json({ hits });
}

async function listen(app: express.Express): Promise<{ server: Server; url: string }> {
  const server = createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const config = JSON.parse(process.argv[2] ?? '') as HttpNodeConfig;
try {
  const node = await startNode({
    actors: [HTTP_ACTORS],
    workers: config.workers,
    buckets: config.buckets,
    cluster: { port: 0, seeds: config.seeds, secret: config.secret, log: (level, message) => (level === 'info' ? undefined : console.error(`${level}: ${message}`)) },
  });

  const wadiApp = express();
  wadiApp.use(httpSessions({ node, secret: config.cookieSecret }));
  wadiApp.post('/hit', hit);
  const wadi = await listen(wadiApp);

  const redis = createClient({ url: config.redisUrl });
  redis.on('error', (error: unknown) => console.error('redis client:', error));
  await redis.connect();
  const redisApp = express();
  redisApp.use(session({ store: new RedisStore({ client: redis }), secret: config.cookieSecret, resave: false, saveUninitialized: false }));
  redisApp.post('/hit', hit);
  const baseline = await listen(redisApp);

  process.on('message', (request: { id: number; op: 'status' }) => {
    node.cluster!.status().then(
      (value) => send({ id: request.id, value }),
      (error: unknown) => send({ id: request.id, error: String(error) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  send({ ready: { id: node.cluster!.id, url: node.cluster!.url, wadi: wadi.url, redis: baseline.url } });
} catch (error) {
  send({ failed: String((error as Error)?.stack ?? error) });
  process.exit(1);
}
