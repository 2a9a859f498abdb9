/**
 * Loading actor modules. Every thread that hosts or runs actors imports the same module URLs
 * and registers the actor definitions they export.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidArgument, Registry } from '@wadi/core';

/** Turns a path, a file URL or a URL object into the URL string every thread imports. */
export function toModuleUrl(module: string | URL): string {
  if (module instanceof URL) return module.href;
  if (typeof module !== 'string' || module.length === 0) {
    throw new InvalidArgument(`an actor module must be a path or a URL, got ${String(module)}`);
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
