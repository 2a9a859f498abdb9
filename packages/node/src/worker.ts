/**
 * The entry of a worker thread: runs one session runtime (internal/worker-runtime.ts), linked to
 * the main thread through `parentPort`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runWorker } from './internal/worker-runtime.js';
import type { WorkerData } from './internal/protocol.js';

if (parentPort === null) throw new Error('wadi worker entry must run in a worker thread');
runWorker(workerData as WorkerData, parentPort);
