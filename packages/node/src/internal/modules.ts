/**
 * Loading the application's modules. Every thread that hosts or runs actors imports the same
 * actor module URLs and registers the actor definitions they export; a worker with a store
 * imports the evicter module (`StoreOptions.evicters`) and checks what it exports.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidArgument, Registry } from '@wadi/core';
import type { Evicter } from '@wadi/store';
import type { MemoryEvicter } from './demotions.js';

/** Turns a path, a file URL or a URL object into the URL string every thread imports. */
export function toModuleUrl(module: string | URL, what = 'an actor module'): string {
  if (module instanceof URL) return module.href;
  if (typeof module !== 'string' || module.length === 0) {
    throw new InvalidArgument(`${what} must be a path or a URL, got ${String(module)}`);
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(module) && !/^[a-z]:[\\/]/i.test(module)) return module;
  return pathToFileURL(isAbsolute(module) ? module : resolve(module)).href;
}

export async function loadActorModules(registry: Registry, urls: readonly string[]): Promise<string[]> {
  const names: string[] = [];
  for (const url of urls) {
    let exports: Record<string, unknown>;
    try {
      exports = (await import(url)) as Record<string, unknown>;
    } catch (error) {
      throw new InvalidArgument(`cannot load actor module ${url}: ${(error as Error)?.message ?? String(error)}`);
    }
    const defined = registry.addModule(exports);
    if (defined.length === 0) throw new InvalidArgument(`actor module ${url} exports no actor definitions`);
    names.push(...defined);
  }
  return names;
}

/** What a worker tells an evicter module's functions about itself. */
export interface EvicterContext {
  /** This worker's index, from 0. */
  worker: number;
  /** Worker threads of this node. */
  workers: number;
}

/**
 * The exports of an evicter module (`StoreOptions.evicters`, `--evicters`), called once in every
 * worker when it starts; what they return joins the evicters the store options ask for, and a
 * session goes down when any evicter says so.
 */
export interface EvicterModule {
  /** Evicters over the worker's idle activations, demoting to the node's disk. */
  memory?: (context: EvicterContext) => MemoryEvicter[];
  /** Evicters over the sessions parked on the worker's disk, moving them on to the shared tier (`@wadi/store`'s `Evicter`). */
  disk?: (context: EvicterContext) => Evicter[];
}

/** Imports an evicter module and checks its exports, so a mistake fails the node's start, not a tick much later. */
export async function loadEvicterModule(url: string, context: EvicterContext): Promise<{ memory: MemoryEvicter[]; disk: Evicter[] }> {
  let exports: Record<string, unknown>;
  try {
    exports = (await import(url)) as Record<string, unknown>;
  } catch (error) {
    throw new InvalidArgument(`cannot load evicter module ${url}: ${(error as Error)?.message ?? String(error)}`);
  }
  if (exports['memory'] === undefined && exports['disk'] === undefined) {
    throw new InvalidArgument(`evicter module ${url} exports neither \`memory\` nor \`disk\` (functions returning evicters)`);
  }
  const memory = evictersFrom(url, exports, 'memory', context, ['due']) as MemoryEvicter[];
  const disk = evictersFrom(url, exports, 'disk', context, ['touched', 'removed', 'due']) as Evicter[];
  return { memory, disk };
}

function evictersFrom(url: string, exports: Record<string, unknown>, name: 'memory' | 'disk', context: EvicterContext, methods: readonly string[]): unknown[] {
  const make = exports[name];
  if (make === undefined) return [];
  if (typeof make !== 'function') throw new InvalidArgument(`evicter module ${url}: \`${name}\` must be a function returning evicters, got ${typeof make}`);
  let evicters: unknown;
  try {
    evicters = make({ ...context });
  } catch (error) {
    throw new InvalidArgument(`evicter module ${url}: \`${name}()\` threw: ${(error as Error)?.message ?? String(error)}`);
  }
  if (!Array.isArray(evicters)) throw new InvalidArgument(`evicter module ${url}: \`${name}()\` must return an array of evicters`);
  evicters.forEach((evicter, index) => {
    const missing = methods.filter((method) => typeof (evicter as Record<string, unknown> | null)?.[method] !== 'function');
    if (missing.length > 0) throw new InvalidArgument(`evicter module ${url}: \`${name}()\`[${index}] has no method ${missing.join(', ')}`);
  });
  return evicters;
}
