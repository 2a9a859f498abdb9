/**
 * The Fastify adapter over a real two-node cluster: a Fastify app on each node, one client's
 * session read and written through `request.session` on both, a tampered cookie refused, and one
 * client's concurrent requests still serialized by the session's turns.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import Fastify, { type FastifyInstance } from 'fastify';
import { fastifySessions, httpSessions, type Session } from '@wadi/http';
import { Browser, SECRET, startApps, stopAll } from './helpers.js';

const servers: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
  await stopAll();
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
type Counted = Session & { count?: number };

async function fastifyApps(count: number): Promise<string[]> {
  const apps = await startApps(count);
  const urls: string[] = [];
  for (const app of apps) {
    const server = Fastify();
    await server.register(fastifySessions(httpSessions({ secret: SECRET, node: app.node })));
    server.post('/increment', async (request) => {
      const session = (request as unknown as { session: Counted }).session;
      const count = session.count ?? 0;
      await sleep(2);
      session.count = count + 1;
      return { count: count + 1, node: app.id };
    });
    server.get('/count', async (request) => ({ count: (request as unknown as { session: Counted }).session.count ?? 0 }));
    server.post('/theme', async (request, reply) => {
      (request as unknown as { session: Counted }).session.count = 1;
      void reply.header('set-cookie', 'theme=dark; Path=/');
      return { ok: true };
    });
    server.post('/unsavable', async (request) => {
      (request as unknown as { session: Session & Record<string, unknown> }).session['callback'] = () => 'functions cannot be stored';
      return { stored: true };
    });
    await server.listen({ port: 0, host: '127.0.0.1' });
    servers.push(server);
    urls.push(`http://127.0.0.1:${(server.server.address() as AddressInfo).port}`);
  }
  return urls;
}

describe('the Fastify adapter', () => {
  it('gives routes request.session, kept in the cluster and served by any node', async () => {
    const [first, second] = await fastifyApps(2);
    const browser = new Browser();
    expect((await browser.post(first!, '/increment')).body).toMatchObject({ count: 1 });
    expect(browser.cookie).toMatch(/^wadi\.sid=/);
    expect((await browser.post(second!, '/increment')).body).toMatchObject({ count: 2 });
    expect((await browser.get(first!, '/count')).body).toEqual({ count: 2 });

    const [name, value] = browser.cookie!.split('=') as [string, string];
    const forged = new Browser();
    forged.cookie = `${name}=${value.slice(0, -2)}xx`;
    expect((await forged.get(second!, '/count')).body).toEqual({ count: 0 });
    expect((await browser.get(second!, '/count')).body).toEqual({ count: 2 });
  });

  it("keeps the session cookie beside a route's own cookie, and turns a failed save into an error", async () => {
    const [first] = await fastifyApps(1);
    const themed = await new Browser().post(first!, '/theme');
    expect(themed.status).toBe(200);
    expect(themed.setCookie.some((line) => line.startsWith('theme=dark'))).toBe(true);
    expect(themed.setCookie.some((line) => line.startsWith('wadi.sid='))).toBe(true);

    const failed = await new Browser().post(first!, '/unsavable');
    expect(failed.status).toBe(500);
    expect(JSON.stringify(failed.body)).toMatch(/cannot be stored/);
    expect(failed.setCookie.some((line) => line.startsWith('wadi.sid='))).toBe(false);
  });

  it("serializes one client's concurrent requests", async () => {
    const [first, second] = await fastifyApps(2);
    const browser = new Browser();
    await browser.post(first!, '/increment');
    await Promise.all(Array.from({ length: 10 }, (_, i) => browser.post(i % 2 === 0 ? first! : second!, '/increment')));
    expect((await browser.get(second!, '/count')).body).toEqual({ count: 11 });
  });
});
