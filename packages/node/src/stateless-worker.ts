/**
 * The task function of the piscina pool that runs stateless actor types (and so the CPU-heavy
 * work handlers offload), away from the threads that host sessions. Results go back encoded,
 * as `[ok, value]`, so errors keep their name, message and code like everywhere else.
 */
import { workerData } from 'node:worker_threads';
import { Registry, UnknownMethod, decode, encode, errorToShape } from '@wadi/core';
import { loadActorModules } from './internal/modules.js';
import type { StatelessPoolData, StatelessTask } from './internal/protocol.js';

const registry = new Registry();
const loaded = loadActorModules(registry, (workerData as StatelessPoolData).modules);

export default async function runStatelessTask(task: StatelessTask): Promise<Uint8Array> {
  try {
    await loaded;
    const def = registry.get(task.type);
    const handler = def.handlers[task.method] as ((state: undefined, ...args: unknown[]) => unknown) | undefined;
    if (handler === undefined) throw new UnknownMethod(task.type, task.method);
    const args = decode(task.args) as unknown[];
    const value = await handler.call(undefined as never, undefined, ...args);
    return encode([true, value]);
  } catch (error) {
    return encode([false, errorToShape(error)]);
  }
}
