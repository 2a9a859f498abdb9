/**
 * The README's main command, run as a newcomer runs it: `apps/demo/dist/main.js` as a real
 * process starts a 3-node cluster (real node processes) serving the shop and the dashboard,
 * prints the URLs, serves a shopper through any node, and on Ctrl-C (SIGINT) stops every process
 * it started and exits 0.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const demoMain = fileURLToPath(new URL('../../apps/demo/dist/main.js', import.meta.url));
const URLS_PREFIX = 'WADI_DEMO_URLS ';

interface DashboardState {
  nodes: { id: string; pid: number | null; process: string; member: string }[];
  owners: number[];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function json<T>(url: string, init?: RequestInit): Promise<{ body: T; headers: Headers }> {
  const response = await fetch(url, init);
  expect(response.status, url).toBe(200);
  return { body: (await response.json()) as T, headers: response.headers };
}

describe('the demo (pnpm demo)', () => {
  it('starts 3 node processes with the shop and the dashboard, prints the URLs, and stops them all on SIGINT', async () => {
    const child = spawn(process.execPath, [demoMain], { env: { ...process.env, DEMO_ANY_PORTS: '1', DEMO_WORKERS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const urls = await new Promise<{ dashboard: string; shops: string[] }>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const line = stdout.split('\n').find((candidate) => candidate.startsWith(URLS_PREFIX));
        if (line !== undefined) resolve(JSON.parse(line.slice(URLS_PREFIX.length)) as { dashboard: string; shops: string[] });
      });
      void exited.then((code) => reject(new Error(`the demo exited (${code}) before printing its URLs:\n${stdout}\n${stderr}`)));
    });
    const pids: number[] = [];
    try {
      expect(stdout).toMatch(/dashboard {2}http:\/\/127\.0\.0\.1:\d+\//);
      expect(urls.shops).toHaveLength(3);

      // One shopper through two nodes: the same cart.
      const first = await fetch(`${urls.shops[0]}/api/cart`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sku: 'figs', quantity: 2 }) });
      expect(first.status).toBe(200);
      const cookie = first.headers.getSetCookie()[0]!.split(';')[0]!;
      const { body: me, headers } = await json<{ node: string; cart: Record<string, number> }>(`${urls.shops[1]}/api/me`, { headers: { cookie } });
      expect(headers.get('x-wadi-node')).toBe('n2');
      expect(me.cart).toEqual({ figs: 2 });

      // The dashboard's state: three running nodes, every bucket owned.
      let state: DashboardState | undefined;
      for (let attempt = 0; attempt < 100; attempt++) {
        state = (await json<DashboardState>(`${urls.dashboard}/api/state`)).body;
        if (state.nodes.every((node) => node.member === 'up') && new Set(state.owners).size === 3 && !state.owners.includes(-1)) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(state!.nodes.map((node) => [node.id, node.process, node.member])).toEqual([
        ['n1', 'running', 'up'],
        ['n2', 'running', 'up'],
        ['n3', 'running', 'up'],
      ]);
      expect(state!.owners).toHaveLength(1024);
      expect(new Set(state!.owners)).toEqual(new Set([0, 1, 2]));
      pids.push(...state!.nodes.map((node) => node.pid!));
      expect((await fetch(`${urls.dashboard}/`)).headers.get('content-type')).toContain('text/html');
    } finally {
      child.kill('SIGINT');
      // Bounded: whatever happened above, no process outlives the test.
      const timer = setTimeout(() => {
        for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
        child.kill('SIGKILL');
      }, 40_000);
      await exited;
      clearTimeout(timer);
    }
    expect(await exited).toBe(0);
    expect(stdout).toContain('every process stopped');
    expect(pids).toHaveLength(3);
    for (const pid of pids) expect(alive(pid), `node process ${pid}`).toBe(false);
  });
});
