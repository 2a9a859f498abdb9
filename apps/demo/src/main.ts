/**
 * The README's main command (`pnpm demo`): starts a 3-node wadi cluster on loopback, each node a
 * real process serving the shop over the session middleware, and the live dashboard; prints the
 * URLs; and on Ctrl-C (SIGINT) or SIGTERM stops the load generator and every node gracefully,
 * removes the nodes' data directories, and exits 0.
 *
 * Options (flags after `pnpm demo --`, or environment):
 *   --nodes N (DEMO_NODES, 3)         nodes to start
 *   --workers N (DEMO_WORKERS, 2)     worker threads per node
 *   --routing proxy|migrate|redirect  (DEMO_ROUTING, proxy)
 *   --port N (DEMO_PORT, 3000)        dashboard port; the nodes' shops take the next ports
 *   --any-ports (DEMO_ANY_PORTS=1)    let every server pick a free port (tests)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommandLine } from './command-line.js';
import { startDashboard } from './dashboard.js';
import { LoadRunner } from './load-runner.js';
import { Monitor } from './monitor.js';
import { Supervisor, portOrAny } from './supervisor.js';

const BUCKETS = 1024;
const HOST = '127.0.0.1';

const USAGE = 'usage: pnpm demo -- [--nodes 1..9] [--workers N] [--routing proxy|migrate|redirect] [--port N] [--any-ports]';

const { values } = parseCommandLine({
  options: {
    nodes: { type: 'string', default: process.env['DEMO_NODES'] ?? '3' },
    workers: { type: 'string', default: process.env['DEMO_WORKERS'] ?? '2' },
    routing: { type: 'string', default: process.env['DEMO_ROUTING'] ?? 'proxy' },
    port: { type: 'string', default: process.env['DEMO_PORT'] ?? '3000' },
    'any-ports': { type: 'boolean', default: process.env['DEMO_ANY_PORTS'] === '1' },
  },
}, USAGE);
const nodeCount = Number(values.nodes);
const routing = values.routing!;
if (!Number.isInteger(nodeCount) || nodeCount < 1 || nodeCount > 9 || !['proxy', 'migrate', 'redirect'].includes(routing)) {
  console.error(USAGE);
  process.exit(2);
}
const anyPorts = values['any-ports'] === true;
const dashboardPort = anyPorts ? 0 : Number(values.port);

const dataRoot = mkdtempSync(join(tmpdir(), 'wadi-demo-'));
// One secret for the cluster, one for the cookies: fresh for every run of the demo.
const env: Record<string, string> = { WADI_SECRET: randomBytes(32).toString('hex'), DEMO_COOKIE_SECRET: randomBytes(32).toString('hex') };
const supervisor = new Supervisor({
  dataRoot,
  workers: Number(values.workers),
  routing,
  env,
  basePorts: anyPorts ? { ws: 0, status: 0, app: 0 } : { ws: 7101, status: 8101, app: dashboardPort + 1 },
});
const monitor = new Monitor(supervisor, BUCKETS);
let load: LoadRunner | undefined;
const dashboard = await startDashboard({ host: HOST, port: await portOrAny(dashboardPort), supervisor, monitor, load: () => load!, routing });
env['DEMO_DASHBOARD_URL'] = dashboard.url;
load = new LoadRunner(`${dashboard.url}/api/targets`);
load.on('started', (users: number, seconds: number) => monitor.event('load', `load generator started: ${users} shoppers${seconds > 0 ? ` for ${seconds} s` : ''}`));
load.on('finished', (last: { requests: number; failures: number; mismatches: number; total: { perSec: number; p99: number } } | null) =>
  monitor.event('load', last === null ? 'load generator stopped' : `load generator finished: ${last.requests} requests, ${Math.round(last.total.perSec)} req/s, p99 ${last.total.p99.toFixed(1)} ms, ${last.failures} failed, ${last.mismatches} mismatches`),
);

let stopping: Promise<void> | undefined;
function shutdown(signal: string, exitCode = 0): void {
  if (stopping !== undefined) {
    console.log(`demo: ${signal} again: killing every node now`);
    supervisor.killAll();
    return;
  }
  console.log(`\ndemo: ${signal}: stopping the load generator and every node (graceful leave)...`);
  stopping = (async () => {
    await load?.stop();
    monitor.stop();
    await supervisor.shutdown(30_000);
    await dashboard.close();
    rmSync(dataRoot, { recursive: true, force: true });
    const left = supervisor.nodes.filter((node) => node.pid !== undefined);
    console.log(left.length === 0 ? 'demo: every process stopped. Bye.' : `demo: still running: ${left.map((node) => node.id).join(', ')}`);
    process.exit(left.length === 0 ? exitCode : 1);
  })();
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));

console.log(`wadi demo: starting ${nodeCount} nodes on ${HOST} (routing: ${routing})...`);
try {
  for (let i = 0; i < nodeCount && stopping === undefined; i++) {
    const node = await supervisor.add();
    console.log(`  ${node.id}  shop ${node.app}   status ${node.status}/status   cluster ${node.ws}   pid ${node.pid}`);
  }
} catch (error) {
  console.error(`demo: a node did not start: ${(error as Error).message}`);
  shutdown('failure', 1);
  await stopping;
}
monitor.start();
if (stopping === undefined) {
  console.log(`
  dashboard  ${dashboard.url}/
  shop       ${supervisor.serving().map((node) => node.app).join('  ')}   (any node serves any shopper)
  load       npx -y pnpm@12 demo:load -- --targets ${dashboard.url}/api/targets --users 50 --seconds 30
WADI_DEMO_URLS ${JSON.stringify({ dashboard: dashboard.url, shops: supervisor.serving().map((node) => node.app) })}

Press Ctrl-C to stop every process.`);
}
