/**
 * Child process for the cluster benchmarks: one cluster member (`startNode` with the bench's
 * session actor, as many workers as the config says) that the bench drives over IPC. It exists
 * because sessions are placed on their first caller's node: to have sessions live on this node,
 * this node's own main thread must call them first (`create`).
 *
 * usage: fork(cluster-node.js, [JSON.stringify(ChildNodeConfig)])
 *
 * Sends `{ ready: { id, url } }` once it is a member (or `{ failed }`), then answers each
 * `{ id, op, ... }` request with `{ id, value }` or `{ id, error }`. SIGTERM is a graceful leave,
 * as in the `wadi node` CLI: `node.stop()`, then exit 0 (1 if the stop failed).
 */
import { startNode, type WadiNode } from '@wadi/node';
import { SESSION_MODULE, Session } from '../benchmarks/session.js';
import { pipelined } from '../child-nodes.js';

export interface ChildNodeConfig {
  seeds: string[];
  secret: string;
  workers: number;
  buckets: number;
  /** Backups per bucket (the cluster's default, 1, when absent); the coordinator's counts. */
  replicas?: number;
}

/** What the bench asks of the node. */
export type ChildRequestBody =
  | { op: 'status' }
  /** Calls sessions `${prefix}0` .. `${prefix}${count - 1}` from this node, `window` at a time: `fill(bytes)` if bytes > 0, else `add(1)`. */
  | { op: 'create'; prefix: string; count: number; bytes: number; window: number };

/** A request as sent: each is answered once, with its id. */
export type ChildRequest = ChildRequestBody & { id: number };

export type ChildMessage = { ready: { id: string; url: string } } | { failed: string } | { id: number; value: unknown } | { id: number; error: string };

const send = (message: ChildMessage): void => {
  process.send?.(message);
};

const config = JSON.parse(process.argv[2] ?? '') as ChildNodeConfig;
let node: WadiNode;
try {
  node = await startNode({
    actors: [SESSION_MODULE],
    workers: config.workers,
    buckets: config.buckets,
    cluster: { port: 0, seeds: config.seeds, secret: config.secret, ...(config.replicas === undefined ? {} : { replicas: config.replicas }), log: (level, message) => (level === 'info' ? undefined : console.error(`${new Date().toISOString()} ${level}: ${message}`)) },
  });
} catch (error) {
  send({ failed: String(error) });
  process.exit(1);
}
const cluster = node.cluster!;

async function handle(request: ChildRequest): Promise<unknown> {
  switch (request.op) {
    case 'status':
      return cluster.status();
    case 'create': {
      const { prefix, count, bytes, window } = request;
      const start = performance.now();
      await pipelined(count, window, (i) => (bytes > 0 ? node.ref(Session, `${prefix}${i}`).fill(bytes) : node.ref(Session, `${prefix}${i}`).add(1)));
      return performance.now() - start;
    }
  }
}

process.on('message', (request: ChildRequest) => {
  handle(request).then(
    (value) => send({ id: request.id, value }),
    (error: unknown) => send({ id: request.id, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) }),
  );
});

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  node.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error('graceful stop failed:', error);
      process.exit(1);
    },
  );
});
// Without the bench nothing would ever stop this process, and nobody needs a graceful leave from
// a benchmark's cluster: exit at once if the IPC channel goes.
process.on('disconnect', () => process.exit(1));

send({ ready: { id: cluster.id, url: cluster.url } });
