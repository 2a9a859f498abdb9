/**
 * The actor types a thread knows, by name. Filled from actor modules: every export of a module
 * that is an actor definition is registered under its name.
 */
import { isActorDef, type AnyActorDef } from './actor.js';
import { InvalidArgument, UnknownActorType } from './errors.js';

export class Registry {
  readonly #byName = new Map<string, AnyActorDef>();

  add(def: AnyActorDef): void {
    const existing = this.#byName.get(def.name);
    if (existing !== undefined && existing !== def) {
      throw new InvalidArgument(`two different actor definitions are named '${def.name}'`);
    }
    this.#byName.set(def.name, def);
  }

  /** Registers every actor definition a module exports; returns their names. */
  addModule(moduleExports: Record<string, unknown>): string[] {
    const names: string[] = [];
    for (const value of Object.values(moduleExports)) {
      if (isActorDef(value)) {
        this.add(value);
        names.push(value.name);
      }
    }
    return names;
  }

  find(name: string): AnyActorDef | undefined {
    return this.#byName.get(name);
  }

  get(name: string): AnyActorDef {
    const def = this.#byName.get(name);
    if (def === undefined) throw new UnknownActorType(name);
    return def;
  }

  names(): string[] {
    return [...this.#byName.keys()];
  }
}
