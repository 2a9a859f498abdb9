/**
 * Typed refs. The methods of an actor type are known from its definition, so a ref is a small
 * object whose prototype (built once per type) has one method per handler: no Proxy trap on the
 * hot path. `ref.tell` gives the fire-and-forget twin with the same method names.
 */
import type { AnyActorDef, RoutingPolicy } from '../actor.js';

/** What a ref needs from the system that made it. */
export interface RefHost {
  ask(def: AnyActorDef, id: string, method: string, args: unknown[], timeoutMs: number, key?: string, routing?: RoutingPolicy): Promise<unknown>;
  tell(def: AnyActorDef, id: string, method: string, args: unknown[], routing?: RoutingPolicy): void;
}

interface RefState {
  readonly host: RefHost;
  readonly def: AnyActorDef;
  readonly id: string;
  readonly timeoutMs: number;
  readonly routing: RoutingPolicy | undefined;
  /** The activation key, computed once per ref rather than once per call. */
  readonly key: string;
}

const STATE = Symbol('wadi.ref');
type RefObject = { [STATE]: RefState };

const prototypes = new WeakMap<AnyActorDef, { ask: object; tell: object }>();

export function createRef(host: RefHost, def: AnyActorDef, id: string, timeoutMs: number, routing?: RoutingPolicy): object {
  const ref = Object.create(prototypesOf(def).ask) as RefObject;
  ref[STATE] = { host, def, id, timeoutMs, routing, key: `${def.name}\u0000${id}` };
  return ref;
}

/** The actor type and id a ref points at. */
export function refTarget(ref: object): { type: string; id: string } | undefined {
  const state = (ref as Partial<RefObject>)[STATE];
  return state === undefined ? undefined : { type: state.def.name, id: state.id };
}

function prototypesOf(def: AnyActorDef): { ask: object; tell: object } {
  let protos = prototypes.get(def);
  if (protos !== undefined) return protos;
  const ask: Record<string, unknown> = {};
  const tell: Record<string, unknown> = {};
  for (const method of Object.keys(def.handlers)) {
    ask[method] = function (this: RefObject, ...args: unknown[]): Promise<unknown> {
      const state = this[STATE];
      return state.host.ask(state.def, state.id, method, args, state.timeoutMs, state.key, state.routing);
    };
    tell[method] = function (this: RefObject, ...args: unknown[]): void {
      const state = this[STATE];
      state.host.tell(state.def, state.id, method, args, state.routing);
    };
  }
  Object.defineProperty(ask, 'tell', {
    get(this: RefObject) {
      const twin = Object.create(tell) as RefObject;
      twin[STATE] = this[STATE];
      return twin;
    },
  });
  Object.defineProperty(ask, 'toString', {
    value(this: RefObject) {
      return `Ref(${this[STATE].def.name} '${this[STATE].id}')`;
    },
  });
  protos = { ask, tell };
  prototypes.set(def, protos);
  return protos;
}
