/**
 * The README's main command, run as a newcomer runs it: `apps/demo/dist/main.js` as a real
 * process starts a 3-node cluster (real node processes) serving the shop and the dashboard,
 * prints the URLs, serves a shopper through any node, and on Ctrl-C (SIGINT) stops every process
 * it started and exits 0.
 */
import { describe, expect, it } from 'vitest';
import { alive, startDemo, type DemoProcess } from '../demo-process.js';

interface DashboardState {
  nodes: { id: string; pid: number | null; process: string; member: string }[];
  owners: number[];
}

async function json<T>(url: string, init?: RequestInit): Promise<{ body: T; headers: Headers }> {
  const response = await fetch(url, init);
  expect(response.status, url).toBe(200);
  return { body: (await response.json()) as T, headers: response.headers };
}

describe('the demo (pnpm demo)', () => {
  it('starts 3 node processes with the shop and the dashboard, prints the URLs, and stops them all on SIGINT', async () => {
    const demo: DemoProcess = await startDemo();
    const pids: number[] = [];
    let code: number | null;
    try {
      expect(demo.output()).toMatch(/dashboard {2}http:\/\/127\.0\.0\.1:\d+\//);
      expect(demo.shops).toHaveLength(3);

      // One shopper through two nodes: the same cart.
      const first = await fetch(`${demo.shops[0]}/api/cart`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sku: 'figs', quantity: 2 }) });
      expect(first.status).toBe(200);
      const cookie = first.headers.getSetCookie()[0]!.split(';')[0]!;
      const { body: me, headers } = await json<{ node: string; cart: Record<string, number> }>(`${demo.shops[1]}/api/me`, { headers: { cookie } });
      expect(headers.get('x-wadi-node')).toBe('n2');
      expect(me.cart).toEqual({ figs: 2 });

      // The dashboard's state: three running nodes, every bucket owned by one of them.
      let state: DashboardState | undefined;
      for (let attempt = 0; attempt < 150; attempt++) {
        state = (await json<DashboardState>(`${demo.dashboard}/api/state`)).body;
        if (state.nodes.every((node) => node.member === 'up') && new Set(state.owners).size === 3 && !state.owners.includes(-1)) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      pids.push(...state!.nodes.map((node) => node.pid!));
      demo.track(pids);
      expect(state!.nodes.map((node) => [node.id, node.process, node.member])).toEqual([
        ['n1', 'running', 'up'],
        ['n2', 'running', 'up'],
        ['n3', 'running', 'up'],
      ]);
      expect(state!.owners).toHaveLength(1024);
      expect(new Set(state!.owners)).toEqual(new Set([0, 1, 2]));
      expect((await fetch(`${demo.dashboard}/`)).headers.get('content-type')).toContain('text/html');
    } finally {
      code = await demo.stop();
    }
    expect(code).toBe(0);
    expect(demo.output()).toContain('every process stopped');
    expect(pids).toHaveLength(3);
    for (const pid of pids) expect(alive(pid), `node process ${pid}`).toBe(false);
  });
});
