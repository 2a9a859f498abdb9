import { describe, expect, it } from 'vitest';
import {
  ActorSystem,
  InvalidArgument,
  RESERVED_HANDLER_NAMES,
  Registry,
  UnknownActorType,
  defineActor,
  isActorDef,
  refTarget,
  type ActorOptions,
} from '../src/index.js';
import { thrownBy } from './helpers.js';

const noop = (): void => undefined;

function expectInvalid(run: () => unknown): InvalidArgument {
  const error = thrownBy(run);
  expect(error).toBeInstanceOf(InvalidArgument);
  expect((error as InvalidArgument).code).toBe('WADI_INVALID_ARGUMENT');
  return error as InvalidArgument;
}

describe('defineActor', () => {
  it('returns a frozen definition with the name, state factory and handlers', () => {
    const state = (): { n: number } => ({ n: 0 });
    const def = defineActor('Cart', { state, handlers: { add: (s: { n: number }, k: number) => (s.n += k) } });
    expect(def.name).toBe('Cart');
    expect(def.state).toBe(state);
    expect(def.stateless).toBe(false);
    expect(Object.keys(def.handlers)).toEqual(['add']);
    expect(def.mailboxCapacity).toBeUndefined();
    expect(def.idleTimeoutMs).toBeUndefined();
    expect(Object.isFrozen(def)).toBe(true);
    expect(Object.isFrozen(def.handlers)).toBe(true);
    expect(isActorDef(def)).toBe(true);
  });

  it('copies the handlers object, so later changes to it do not leak in', () => {
    const handlers: Record<string, (s: unknown) => unknown> = { a: noop };
    const def = defineActor('Copy', { state: () => ({}), handlers });
    handlers.b = noop;
    expect(Object.keys(def.handlers)).toEqual(['a']);
  });

  it('accepts every name the rule allows', () => {
    for (const name of ['A', '_', 'cart', 'Cart_2', 'app.cart', 'app:cart-v2', 'x'.repeat(128)]) {
      expect(defineActor(name, { state: () => ({}), handlers: {} }).name).toBe(name);
    }
  });

  it.each([
    ['empty', ''],
    ['starting with a digit', '1cart'],
    ['starting with a dash', '-cart'],
    ['with a space', 'my cart'],
    ['with a slash', 'app/cart'],
    ['with a NUL', 'a\u0000b'],
    ['non-ASCII', 'café'],
    ['too long', 'x'.repeat(129)],
    ['not a string', 42],
    ['undefined', undefined],
  ])('rejects a name that is %s', (_label, name) => {
    expectInvalid(() => defineActor(name as string, { state: () => ({}), handlers: {} }));
  });

  it.each([...RESERVED_HANDLER_NAMES])('rejects the reserved handler name %s', (reserved) => {
    // A computed key makes even '__proto__' an own property of the handlers object.
    const handlers = { ok: noop, [reserved]: noop };
    const error = expectInvalid(() => defineActor('Reserved', { state: () => ({}), handlers }));
    expect(error.message).toContain(reserved);
  });

  it('reserves at least then and tell', () => {
    expect(RESERVED_HANDLER_NAMES.has('then')).toBe(true);
    expect(RESERVED_HANDLER_NAMES.has('tell')).toBe(true);
  });

  it('requires a state factory for a stateful type', () => {
    expectInvalid(() => defineActor('NoState', { handlers: { a: noop } }));
    expectInvalid(() => defineActor('BadState', { state: { n: 0 } as unknown as () => object, handlers: { a: noop } }));
  });

  it('needs no state factory for a stateless type', () => {
    const def = defineActor('Pure', { stateless: true, handlers: { a: noop } });
    expect(def.stateless).toBe(true);
    expect(def.state()).toBeUndefined();
  });

  it('requires a handlers object whose values are functions', () => {
    expectInvalid(() => defineActor('NoHandlers', { state: () => ({}) } as unknown as ActorOptions<object, never>));
    expectInvalid(() => defineActor('NullHandlers', { state: () => ({}), handlers: null as never }));
    expectInvalid(() => defineActor('BadHandler', { state: () => ({}), handlers: { a: 42 as never } }));
    expectInvalid(() => defineActor('NoOptions', undefined as never));
  });

  it.each([0, -1, NaN, Infinity, '10'])('rejects mailboxCapacity and idleTimeoutMs of %s', (bad) => {
    expectInvalid(() => defineActor('Opt', { state: () => ({}), handlers: {}, mailboxCapacity: bad as number }));
    expectInvalid(() => defineActor('Opt', { state: () => ({}), handlers: {}, idleTimeoutMs: bad as number }));
  });

  it('refuses an option it does not know, suggesting the one meant', () => {
    expect(() => defineActor('Opt', { state: () => ({}), handlers: {}, idleTimeout: 5 } as never)).toThrow(/actor 'Opt': unknown option 'idleTimeout' \(did you mean 'idleTimeoutMs'\?\)/);
    expect(() => defineActor('Opt', { state: () => ({}), handlers: {}, persistent: true } as never)).toThrow(/unknown option 'persistent'; known: state, handlers/);
  });

  it('keeps valid options', () => {
    const def = defineActor('Opt', { state: () => ({}), handlers: {}, mailboxCapacity: 3, idleTimeoutMs: 1500 });
    expect(def.mailboxCapacity).toBe(3);
    expect(def.idleTimeoutMs).toBe(1500);
  });
});

describe('isActorDef', () => {
  it('tells definitions from look-alikes', () => {
    expect(isActorDef(defineActor('X', { state: () => ({}), handlers: {} }))).toBe(true);
    for (const value of [null, undefined, 1, 'X', {}, { name: 'X', handlers: {} }]) expect(isActorDef(value)).toBe(false);
  });
});

describe('Registry', () => {
  const A = defineActor('A', { state: () => ({}), handlers: { a: noop } });
  const B = defineActor('B', { state: () => ({}), handlers: { b: noop } });

  it('finds definitions by name', () => {
    const registry = new Registry();
    registry.add(A);
    registry.add(A); // the same definition again is fine
    expect(registry.find('A')).toBe(A);
    expect(registry.get('A')).toBe(A);
    expect(registry.find('B')).toBeUndefined();
    expect(registry.names()).toEqual(['A']);
  });

  it('throws UnknownActorType for an unknown name', () => {
    const error = thrownBy(() => new Registry().get('Ghost'));
    expect(error).toBeInstanceOf(UnknownActorType);
    expect((error as UnknownActorType).code).toBe('WADI_UNKNOWN_ACTOR_TYPE');
    expect((error as UnknownActorType).actorType).toBe('Ghost');
  });

  it('refuses two different definitions with one name', () => {
    const registry = new Registry();
    registry.add(A);
    expectInvalid(() => registry.add(defineActor('A', { state: () => ({}), handlers: { other: noop } })));
    expect(registry.get('A')).toBe(A);
  });

  it('registers every actor definition a module exports', () => {
    const registry = new Registry();
    const names = registry.addModule({ A, B, helper: noop, constant: 3, notDef: { name: 'C' } });
    expect(names.sort()).toEqual(['A', 'B']);
    expect(registry.names().sort()).toEqual(['A', 'B']);
  });
});

describe('refs', () => {
  const Echo = defineActor('Echo', {
    state: () => ({}),
    handlers: { echo: (_s: object, v: unknown) => v, twice: (_s: object, n: number) => n * 2 },
  });

  it('have one method per handler, plus tell', () => {
    const system = new ActorSystem();
    system.registry.add(Echo);
    const ref = system.ref(Echo, 'e1');
    expect(typeof ref.echo).toBe('function');
    expect(typeof ref.twice).toBe('function');
    expect(typeof ref.tell.echo).toBe('function');
    expect((ref as unknown as { then?: unknown }).then).toBeUndefined(); // a ref is not a thenable
    expect(refTarget(ref)).toEqual({ type: 'Echo', id: 'e1' });
    expect(refTarget(ref.tell)).toEqual({ type: 'Echo', id: 'e1' });
    expect(refTarget({})).toBeUndefined();
    expect(String(ref)).toBe("Ref(Echo 'e1')");
    system.stop();
  });

  it('can be awaited and passed around without being mistaken for a promise', async () => {
    const system = new ActorSystem();
    system.registry.add(Echo);
    const ref = await Promise.resolve(system.ref(Echo, 'e2'));
    expect(await ref.twice(21)).toBe(42);
    system.stop();
  });

  it('validate the id and the timeout', () => {
    const system = new ActorSystem();
    system.registry.add(Echo);
    expectInvalid(() => system.ref(Echo, ''));
    expectInvalid(() => system.ref(Echo, '/no-group'));
    expectInvalid(() => system.ref(Echo, 'x'.repeat(2000)));
    expectInvalid(() => system.ref(Echo, 'ok', { timeoutMs: 0 }));
    expectInvalid(() => system.ref(Echo, 'ok', { timeoutMs: -5 }));
    expectInvalid(() => system.ref(Echo, 'ok', { timeoutMs: NaN }));
    system.stop();
  });
});
