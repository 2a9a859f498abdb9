/**
 * Echo worker for the raw `postMessage` baselines: every message is posted straight back, one
 * `postMessage` per message (no batching), unchanged.
 */
import { parentPort } from 'node:worker_threads';

if (parentPort === null) throw new Error('echo-worker must be started as a worker thread');
const port = parentPort;
port.on('message', (message: unknown) => port.postMessage(message));
