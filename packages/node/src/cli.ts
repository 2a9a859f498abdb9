#!/usr/bin/env node
/**
 * The `wadi` command line. `wadi node` starts one cluster member in this process and keeps it
 * running until SIGTERM or SIGINT, which is a graceful leave (exit 0 once done). A node that the
 * cluster declared down exits 1, so a supervisor restarts it as a new incarnation.
 */
import { parseArgs } from 'node:util';
import { MAX_REPLICAS } from '@wadi/cluster';
import { WadiError } from '@wadi/core';
import { startNode, type NodeOptions } from './node.js';

const USAGE = `usage: wadi node [options]

  --host HOST            address to listen on (default 127.0.0.1)
  --port PORT            WebSocket port for other nodes (default 7101)
  --http-port PORT       HTTP port for GET /status and /layout (default: none)
  --seeds URL,URL        nodes to join through (default: none, form a new cluster)
  --data DIR             data directory: identity, incarnation, committed layout
  --actors MODULE        actor module to load (repeatable, or comma-separated)
  --workers N            worker threads (default: CPU count; 0: sessions on the main thread)
  --buckets N            buckets of the id space (default 1024; the same on every node)
  --replicas N           backups per bucket on other nodes (default 1; 0 to 8; the coordinator's counts)
  --id ID                node id (default host:port)
  --cluster-name NAME    nodes with another cluster name are refused (default wadi)
  --advertised-url URL   the URL other nodes dial, if not ws://host:port
  --tls-key FILE --tls-cert FILE [--tls-ca FILE]   serve and dial wss://
  --heartbeat-ms N --suspect-after-ms N --down-after-ms N --probe-interval-ms N
                         failure detection timings (defaults 500, 2000, 1000, 500)
  --quorum-grace-ms N    serve sessions only while a majority of the layout acknowledged this
                         node within N ms (default: suspect-after-ms minus heartbeat-ms, at least
                         half of suspect-after-ms; below suspect-after-ms)
  --max-payload-bytes N  largest frame accepted from a peer (default 16 MiB)
  --shared DIR|URL       shared session store: a directory every node on this host opens
                         (LMDB), or postgres://user@host/db
  --idle-ms N            demote sessions idle this long from memory to disk
  --max-active N         at most N active sessions per worker (least recently used demoted)
  --max-heap-mb N        demote least recently used sessions while a worker's heap exceeds N MiB
  --disk-idle-ms N       move sessions parked on disk this long on to the shared store
  --max-on-disk N        at most N sessions on disk per worker (the rest go to the shared store)
  --evicters MODULE      the application's own evicters: a module exporting memory() and/or
                         disk(), each returning evicters (see StoreOptions.evicters)

Sessions parked on disk go to DIR/sessions when --data is given.

The cluster secret comes from the WADI_SECRET environment variable.`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command !== 'node') {
    console.error(`wadi: unknown command '${command}'\n\n${USAGE}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  let options: NodeOptions;
  try {
    options = parseNodeOptions(rest);
  } catch (error) {
    console.error(`wadi: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  return runNode(options);
}

function parseNodeOptions(args: string[]): NodeOptions {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'http-port': { type: 'string' },
      seeds: { type: 'string' },
      data: { type: 'string' },
      actors: { type: 'string', multiple: true },
      workers: { type: 'string' },
      buckets: { type: 'string' },
      replicas: { type: 'string' },
      id: { type: 'string' },
      'cluster-name': { type: 'string' },
      'advertised-url': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-ca': { type: 'string' },
      'heartbeat-ms': { type: 'string' },
      'suspect-after-ms': { type: 'string' },
      'down-after-ms': { type: 'string' },
      'probe-interval-ms': { type: 'string' },
      'quorum-grace-ms': { type: 'string' },
      'max-payload-bytes': { type: 'string' },
      shared: { type: 'string' },
      'idle-ms': { type: 'string' },
      'max-active': { type: 'string' },
      'max-heap-mb': { type: 'string' },
      'disk-idle-ms': { type: 'string' },
      'max-on-disk': { type: 'string' },
      evicters: { type: 'string' },
    },
  });
  const integer = (name: string, min: number, max: number): number | undefined => {
    const text = (values as Record<string, string | undefined>)[name];
    if (text === undefined) return undefined;
    // Plain decimal digits only: Number() would read '' as 0 and '0x10' as 16.
    const value = /^\d{1,16}$/.test(text.trim()) ? Number(text) : Number.NaN;
    if (!Number.isInteger(value) || value < min || value > max) throw new Error(`--${name} must be an integer from ${min} to ${max}, got '${text}'`);
    return value;
  };
  if ((values['tls-key'] === undefined) !== (values['tls-cert'] === undefined)) throw new Error('--tls-key and --tls-cert go together');
  if (values['tls-ca'] !== undefined && values['tls-key'] === undefined) throw new Error('--tls-ca goes with --tls-key and --tls-cert');
  const seeds = values.seeds?.split(',').map((seed) => seed.trim()).filter((seed) => seed.length > 0) ?? [];
  // Given but empty would start a new cluster of one instead of joining: refuse it.
  if (values.seeds !== undefined && seeds.length === 0) throw new Error(`--seeds needs at least one ws:// or wss:// URL, got '${values.seeds}' (leave it out to start a new cluster)`);
  for (const name of ['data', 'id', 'host', 'advertised-url'] as const) {
    if (values[name] !== undefined && values[name].trim() === '') throw new Error(`--${name} needs a value`);
  }
  for (const seed of seeds) {
    if (!/^wss?:\/\/[^/\s]+/.test(seed)) throw new Error(`--seeds: '${seed}' is not a ws:// or wss:// URL`);
  }
  const timings = {
    heartbeatMs: integer('heartbeat-ms', 10, 60_000),
    suspectAfterMs: integer('suspect-after-ms', 50, 600_000),
    downAfterMs: integer('down-after-ms', 0, 600_000),
    probeIntervalMs: integer('probe-interval-ms', 10, 60_000),
    quorumGraceMs: integer('quorum-grace-ms', 1, 600_000),
  };
  const actors = values.actors?.flatMap((list) => list.split(',')).map((module) => module.trim()).filter((module) => module.length > 0);
  const workers = integer('workers', 0, 256);
  const buckets = integer('buckets', 1, 65_536);
  const replicas = integer('replicas', 0, MAX_REPLICAS);
  const httpPort = integer('http-port', 0, 65_535);
  const maxPayloadBytes = integer('max-payload-bytes', 1024, 1024 * 1024 * 1024);
  const idleMs = integer('idle-ms', 1, 30 * 24 * 3600 * 1000);
  const maxActivePerWorker = integer('max-active', 1, 100_000_000);
  const maxHeapMb = integer('max-heap-mb', 16, 1024 * 1024);
  const diskIdleMs = integer('disk-idle-ms', 1, 365 * 24 * 3600 * 1000);
  const maxOnDiskPerWorker = integer('max-on-disk', 1, 1_000_000_000);
  if (values.shared !== undefined && values.shared.trim() === '') throw new Error('--shared needs a directory or a postgres:// URL');
  if (values.evicters !== undefined && values.evicters.trim() === '') throw new Error('--evicters needs a module path or URL');
  const store = {
    ...(values.shared === undefined ? {} : { shared: values.shared }),
    ...(idleMs === undefined ? {} : { idleMs }),
    ...(maxActivePerWorker === undefined ? {} : { maxActivePerWorker }),
    ...(maxHeapMb === undefined ? {} : { maxHeapBytesPerWorker: maxHeapMb * 1024 * 1024 }),
    ...(diskIdleMs === undefined ? {} : { diskIdleMs }),
    ...(maxOnDiskPerWorker === undefined ? {} : { maxOnDiskPerWorker }),
    ...(values.evicters === undefined ? {} : { evicters: values.evicters }),
  };
  return {
    store,
    ...(actors === undefined ? {} : { actors }),
    ...(workers === undefined ? {} : { workers }),
    ...(buckets === undefined ? {} : { buckets }),
    cluster: {
      host: values.host ?? '127.0.0.1',
      port: integer('port', 0, 65_535) ?? 7101,
      seeds,
      ...(httpPort === undefined ? {} : { httpPort }),
      ...(values.data === undefined ? {} : { dataDir: values.data }),
      ...(values.id === undefined ? {} : { id: values.id }),
      ...(values['cluster-name'] === undefined ? {} : { clusterName: values['cluster-name'] }),
      ...(values['advertised-url'] === undefined ? {} : { advertisedUrl: values['advertised-url'] }),
      ...(values['tls-key'] === undefined
        ? {}
        : { tls: { keyFile: values['tls-key'], certFile: values['tls-cert']!, ...(values['tls-ca'] === undefined ? {} : { caFile: values['tls-ca'] }) } }),
      ...(maxPayloadBytes === undefined ? {} : { maxPayloadBytes }),
      ...(replicas === undefined ? {} : { replicas }),
      timings: Object.fromEntries(Object.entries(timings).filter(([, value]) => value !== undefined)),
    },
  };
}

async function runNode(options: NodeOptions): Promise<number> {
  let node;
  try {
    node = await startNode(options);
  } catch (error) {
    console.error(`wadi: the node did not start: ${error instanceof WadiError ? error.message : String(error)}`);
    return 1;
  }
  const cluster = node.cluster!;
  console.log(`wadi node ${cluster.id} (incarnation ${cluster.incarnation}) listening on ${cluster.url}${cluster.httpUrl === undefined ? '' : `, status at ${cluster.httpUrl}/status`}`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        console.error(`wadi: ${signal} again: exiting without finishing the leave`);
        resolve(1);
        return;
      }
      stopping = true;
      console.log(`wadi: ${signal}: leaving the cluster`);
      node.stop().then(
        () => resolve(0),
        (error: unknown) => {
          console.error('wadi: the graceful stop failed:', error);
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    cluster.events.once('removed', (reason: string) => {
      if (stopping) return;
      stopping = true;
      console.error(`wadi: this node was removed from the cluster (${reason}); exiting so it can restart as a new incarnation`);
      node.stop({ timeoutMs: 1000 }).finally(() => resolve(1));
    });
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error('wadi:', error);
    process.exit(1);
  },
);
