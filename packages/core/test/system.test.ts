import { afterEach, describe, expect, it } from 'vitest';
import {
  ActorSystem,
  DecodeError,
  InvalidArgument,
  MemoryParkedStateStore,
  NotSerializable,
  Overloaded,
  Stopped,
  Timeout,
  UnknownActorType,
  UnknownMethod,
  WadiError,
  activationKey,
  decode,
  defineActor,
  encode,
  type ActorSystemOptions,
} from '../src/index.js';
import { VirtualScheduler, deferred, rejectionOf, settle, thrownBy } from './helpers.js';

class CodedError extends Error {
  override name = 'CodedError';
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

interface CounterState {
  count: number;
  items: string[];
  meta: { touched: boolean; at: Date; tags: Set<string>; blob: Uint8Array };
  stored?: unknown;
}

const Counter = defineActor('Counter', {
  state: (): CounterState => ({ count: 0, items: [], meta: { touched: false, at: new Date(0), tags: new Set(), blob: new Uint8Array([1, 2]) } }),
  handlers: {
    add(state, n: number) {
      state.count += n;
      return state.count;
    },
    push(state, item: string) {
      state.items.push(item);
      return state.items.length;
    },
    get(state) {
      return state;
    },
    store(state, value: unknown) {
      state.stored = value;
      return value;
    },
    mutateArg(_state, value: { name: string }) {
      value.name = 'changed by handler';
      return 'done';
    },
    failSync(state) {
      state.count = -1;
      state.items.push('bad');
      state.meta.touched = true;
      state.meta.tags.add('bad');
      state.meta.blob[0] = 99;
      throw new CodedError('sync failure', 'E_SYNC');
    },
    async failAsync(state) {
      state.count = -2;
      await Promise.resolve();
      state.items.push('bad');
      await new Promise((resolve) => setTimeout(resolve, 1));
      state.meta.touched = true;
      state.meta.tags.add('bad');
      throw new CodedError('async failure', 'E_ASYNC');
    },
    throwWadi() {
      throw new InvalidArgument('not like that');
    },
    throwString(state) {
      state.count = 1000;
      throw 'a plain string';
    },
    returnFunction() {
      return () => 1;
    },
    whoAmI() {
      return { type: this.type, id: this.id };
    },
  },
});

const systems: ActorSystem[] = [];
function makeSystem(options: ActorSystemOptions = {}): ActorSystem {
  const system = new ActorSystem(options);
  system.registry.add(Counter);
  systems.push(system);
  return system;
}
afterEach(() => {
  for (const system of systems.splice(0)) system.stop();
});

async function expectRejection<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E, code?: string): Promise<E> {
  const error = await rejectionOf(promise);
  expect(error).toBeInstanceOf(type);
  if (code !== undefined) expect((error as WadiError).code).toBe(code);
  return error as E;
}

describe('asks and tells', () => {
  it('runs handlers with this as the actor context and returns their results', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'alice/cart');
    expect(await ref.add(2)).toBe(2);
    expect(await ref.add(3)).toBe(5);
    expect(await ref.whoAmI()).toEqual({ type: 'Counter', id: 'alice/cart' });
    ref.tell.add(10);
    expect((await ref.get()).count).toBe(15);
  });

  it('keeps separate state per id', async () => {
    const system = makeSystem();
    await system.ref(Counter, 'a').add(1);
    await system.ref(Counter, 'b').add(100);
    expect((await system.ref(Counter, 'a').get()).count).toBe(1);
    expect((await system.ref(Counter, 'b').get()).count).toBe(100);
    expect(system.stats().activations).toBe(2);
  });

  it('lets a handler ask other actors through this.ref and tell itself', async () => {
    const Peer = defineActor('Peer', {
      state: () => ({ log: [] as string[] }),
      handlers: {
        async relay(_state, to: string, n: number) {
          const total = await this.ref(Counter, to).add(n);
          this.ref(Peer, this.id).tell.note(`relayed ${n}`);
          return total;
        },
        note(state, text: string) {
          state.log.push(text);
        },
        log(state) {
          return state.log;
        },
      },
    });
    const system = makeSystem();
    system.registry.add(Peer);
    const peer = system.ref(Peer, 'p');
    expect(await peer.relay('target', 4)).toBe(4);
    expect(await peer.relay('target', 6)).toBe(10);
    expect(await peer.log()).toEqual(['relayed 4', 'relayed 6']);
  });

  it('counts turns and failed turns', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'stats');
    await ref.add(1);
    await rejectionOf(ref.failSync());
    await ref.add(1);
    const stats = system.stats();
    expect(stats.turns).toBe(3);
    expect(stats.failedTurns).toBe(1);
    expect(stats.activated).toBe(1);
    expect(stats.pendingAsks).toBe(0);
    expect(stats.queued).toBe(0);
  });

  it('drain resolves once every accepted message was processed', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'drained');
    for (let i = 0; i < 100; i++) ref.tell.add(1);
    expect(system.isQuiet()).toBe(false);
    expect(await system.drain()).toBe(true);
    expect(system.isQuiet()).toBe(true);
    expect((await ref.get()).count).toBe(100);
  });
});

describe('rollback', () => {
  it('puts the state back when a handler throws synchronously', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'r1');
    await ref.add(5);
    await ref.push('a');
    const before = await ref.get();
    await rejectionOf(ref.failSync());
    expect(await ref.get()).toEqual(before);
    expect((await ref.get()).meta.blob).toEqual(new Uint8Array([1, 2]));
    // The actor carries on from its committed state.
    expect(await ref.add(1)).toBe(6);
  });

  it('puts the state back when an async handler rejects', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'r2');
    await ref.add(7);
    await ref.push('x');
    const before = await ref.get();
    await rejectionOf(ref.failAsync());
    expect(await ref.get()).toEqual(before);
    expect(await ref.push('y')).toBe(2);
  });

  it('puts the state back when a handler throws something that is not an Error', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'r3');
    await ref.add(3);
    expect(await rejectionOf(ref.throwString())).toBe('a plain string');
    expect((await ref.get()).count).toBe(3);
  });

  it('rolls back failed tells too, and reports them to onTellFailure', async () => {
    const failures: Array<[string, string, string, unknown]> = [];
    const system = makeSystem({ onTellFailure: (type, id, method, error) => failures.push([type, id, method, error]) });
    const ref = system.ref(Counter, 'r4');
    await ref.add(1);
    ref.tell.failSync();
    ref.tell.failAsync();
    expect((await ref.get()).count).toBe(1);
    expect(failures.map(([type, id, method]) => [type, id, method])).toEqual([
      ['Counter', 'r4', 'failSync'],
      ['Counter', 'r4', 'failAsync'],
    ]);
    expect((failures[0]![3] as CodedError).code).toBe('E_SYNC');
    expect((failures[1]![3] as CodedError).code).toBe('E_ASYNC');
  });
});

describe('errors reaching the caller', () => {
  it('keep name, message and code (sync and async)', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'e1');
    const sync = (await rejectionOf(ref.failSync())) as CodedError;
    expect(sync).toBeInstanceOf(Error);
    expect(sync.name).toBe('CodedError');
    expect(sync.message).toBe('sync failure');
    expect(sync.code).toBe('E_SYNC');
    const async = (await rejectionOf(ref.failAsync())) as CodedError;
    expect(async).toBeInstanceOf(Error);
    expect(async.name).toBe('CodedError');
    expect(async.message).toBe('async failure');
    expect(async.code).toBe('E_ASYNC');
  });

  it('keep the wadi error class', async () => {
    const system = makeSystem();
    const error = await expectRejection(system.ref(Counter, 'e2').throwWadi(), InvalidArgument, 'WADI_INVALID_ARGUMENT');
    expect(error.message).toBe('not like that');
    expect(error.name).toBe('InvalidArgument');
  });
});

describe('Overloaded', () => {
  const gates: Array<ReturnType<typeof deferred<void>>> = [];
  const Blocker = defineActor('Blocker', {
    state: () => ({ done: 0 }),
    mailboxCapacity: 3,
    handlers: {
      async block(state, entered: number) {
        const gate = deferred();
        gates.push(gate);
        entered; // the gate index, for readability in failures
        await gate.promise;
        state.done++;
        return state.done;
      },
      done(state) {
        return state.done;
      },
    },
  });

  it('rejects asks and tells past the mailbox capacity, then recovers', async () => {
    gates.length = 0;
    const system = makeSystem();
    system.registry.add(Blocker);
    const ref = system.ref(Blocker, 'busy');
    const first = ref.block(0);
    await settle();
    expect(gates.length).toBe(1); // the first turn is running and holds the actor
    const waiting = [ref.block(1), ref.block(2), ref.block(3)];
    expect(system.stats().queued).toBe(3);
    await expectRejection(ref.block(4), Overloaded, 'WADI_OVERLOADED');
    expect(thrownBy(() => ref.tell.block(5))).toBeInstanceOf(Overloaded);
    // Release the turns one by one: each finishes before the next starts.
    for (let i = 0; i < 4; i++) {
      expect(gates.length).toBe(i + 1);
      gates[i]!.resolve();
      await settle();
    }
    expect(await first).toBe(1);
    expect(await Promise.all(waiting)).toEqual([2, 3, 4]);
    // Room again.
    expect(await ref.done()).toBe(4);
  });

  it('uses the system-wide capacity for types that set none', async () => {
    const system = makeSystem({ mailboxCapacity: 2 });
    const gate = deferred();
    const Slow = defineActor('Slow', {
      state: () => ({}),
      handlers: {
        wait: () => gate.promise,
        fast: () => 'fast',
      },
    });
    system.registry.add(Slow);
    const ref = system.ref(Slow, 's');
    const running = ref.wait();
    await settle();
    const queued = [ref.fast(), ref.fast()];
    await expectRejection(ref.fast(), Overloaded);
    gate.resolve();
    await running;
    expect(await Promise.all(queued)).toEqual(['fast', 'fast']);
  });
});

describe('UnknownActorType and UnknownMethod', () => {
  const Unregistered = defineActor('Unregistered', { state: () => ({}), handlers: { hello: () => 'hi' } });

  it('UnknownActorType when the type is not registered', async () => {
    const system = makeSystem();
    const error = await expectRejection(system.ask(Unregistered, 'u', 'hello', [], 1000), UnknownActorType, 'WADI_UNKNOWN_ACTOR_TYPE');
    expect(error.actorType).toBe('Unregistered');
    await expectRejection(system.ref(Unregistered, 'u').hello(), UnknownActorType);
    expect(thrownBy(() => system.ref(Unregistered, 'u').tell.hello())).toBeInstanceOf(UnknownActorType);
    expect(system.stats().activations).toBe(0);
  });

  it('UnknownMethod when the type has no such handler', async () => {
    const system = makeSystem();
    const error = await expectRejection(system.ask(Counter, 'c', 'nope', [], 1000), UnknownMethod, 'WADI_UNKNOWN_METHOD');
    expect(error.actorType).toBe('Counter');
    expect(error.method).toBe('nope');
    // Inherited Object.prototype members are not handlers.
    await expectRejection(system.ask(Counter, 'c', 'toString', [], 1000), UnknownMethod);
    await expectRejection(system.ask(Counter, 'c', 'hasOwnProperty', [], 1000), UnknownMethod);
    await expectRejection(system.ask(Counter, 'c', '__proto__', [], 1000), UnknownMethod);
    expect(thrownBy(() => system.tell(Counter, 'c', 'nope', []))).toBeInstanceOf(UnknownMethod);
  });
});

describe('NotSerializable', () => {
  it('rejects an ask whose argument is a function, a symbol or a cycle, without running the handler', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'ns');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expectRejection(ref.store(() => 1), NotSerializable, 'WADI_NOT_SERIALIZABLE');
    await expectRejection(ref.store({ nested: { fn() {} } }), NotSerializable);
    await expectRejection(ref.store(Symbol('s')), NotSerializable);
    await expectRejection(ref.store(cyclic), NotSerializable);
    expect(system.stats().activations).toBe(0);
    expect(system.stats().turns).toBe(0);
  });

  it('throws synchronously from a tell', () => {
    const system = makeSystem();
    expect(thrownBy(() => system.ref(Counter, 'ns').tell.store(() => 1))).toBeInstanceOf(NotSerializable);
  });

  it('rejects the ask when the handler returns something that cannot be copied', async () => {
    const system = makeSystem();
    await expectRejection(system.ref(Counter, 'ns').returnFunction(), NotSerializable);
  });
});

describe('Timeout', () => {
  const Hang = defineActor('Hang', {
    state: () => ({}),
    handlers: {
      hang: () => new Promise(() => undefined),
      ping: () => 'pong',
    },
  });

  it('rejects an ask with no reply before its deadline (real timers)', async () => {
    const system = makeSystem();
    system.registry.add(Hang);
    const error = await expectRejection(system.ref(Hang, 'h', { timeoutMs: 100 }).hang(), Timeout, 'WADI_TIMEOUT');
    expect(error.message).toContain('Hang.hang');
  });

  it('rejects at the deadline on an injected clock, and ignores the late reply', async () => {
    const scheduler = new VirtualScheduler();
    const system = makeSystem({ scheduler, askTimeoutMs: 1000 });
    const gate = deferred<string>();
    const Late = defineActor('Late', { state: () => ({}), handlers: { wait: () => gate.promise } });
    system.registry.add(Late);
    let outcome: unknown = 'pending';
    const promise = system.ref(Late, 'l').wait().then(
      (value) => (outcome = value),
      (error) => (outcome = error),
    );
    await scheduler.advance(500);
    expect(outcome).toBe('pending');
    await scheduler.advance(2000);
    await promise;
    expect(outcome).toBeInstanceOf(Timeout);
    expect(system.stats().pendingAsks).toBe(0);
    gate.resolve('too late');
    await settle();
    expect(outcome).toBeInstanceOf(Timeout);
  });

  it('uses the per-ref timeout over the system default', async () => {
    const scheduler = new VirtualScheduler();
    const system = makeSystem({ scheduler, askTimeoutMs: 60_000 });
    system.registry.add(Hang);
    let outcome: unknown = 'pending';
    void system.ref(Hang, 'h2', { timeoutMs: 100 }).hang().catch((error) => (outcome = error));
    await scheduler.advance(1000);
    expect(outcome).toBeInstanceOf(Timeout);
  });
});

describe('timers', () => {
  const Clock = defineActor('Clock', {
    state: () => ({ ticks: [] as string[], timer: 0, values: [] as unknown[] }),
    handlers: {
      afterWithObject(state, ms: number, repeat: boolean) {
        const payload = { v: 1, list: [1] };
        state.timer = repeat ? this.timers.every(ms, 'value', payload) : this.timers.after(ms, 'value', payload);
        payload.v = 2; // changed after the timer was set: must not reach the actor
        payload.list.push(2);
      },
      afterWithFunction(state, ms: number) {
        state.ticks.push('armed');
        this.timers.after(ms, 'value', () => 1);
      },
      value(state, payload: { v: number; list: number[] }) {
        state.values.push(structuredClone(payload));
        payload.v = 99; // must not reach the next delivery of a repeating timer
        payload.list.push(99);
      },
      values(state) {
        return state.values;
      },
      after(state, ms: number, label: string) {
        state.timer = this.timers.after(ms, 'tick', label);
      },
      every(state, ms: number, label: string) {
        state.timer = this.timers.every(ms, 'tick', label);
      },
      cancel(state) {
        this.timers.cancel(state.timer);
      },
      tick(state, label: string) {
        state.ticks.push(label);
      },
      ticks(state) {
        return state.ticks;
      },
      sleep() {
        this.deactivate();
      },
      badTimer(_state, ms: number, method: string) {
        this.timers.after(ms, method);
      },
    },
  });

  function clockSystem(): { system: ActorSystem; scheduler: VirtualScheduler } {
    const scheduler = new VirtualScheduler();
    const system = makeSystem({ scheduler });
    system.registry.add(Clock);
    return { system, scheduler };
  }

  it('after delivers the message to the actor once, when due', async () => {
    const { system, scheduler } = clockSystem();
    const ref = system.ref(Clock, 'c1');
    await ref.after(100, 'a');
    await scheduler.advance(99);
    expect(await ref.ticks()).toEqual([]);
    await scheduler.advance(1);
    expect(await ref.ticks()).toEqual(['a']);
    await scheduler.advance(1000);
    expect(await ref.ticks()).toEqual(['a']);
  });

  it('every repeats until cancelled', async () => {
    const { system, scheduler } = clockSystem();
    const ref = system.ref(Clock, 'c2');
    await ref.every(50, 'e');
    await scheduler.advance(175);
    expect(await ref.ticks()).toEqual(['e', 'e', 'e']);
    await ref.cancel();
    await scheduler.advance(500);
    expect(await ref.ticks()).toEqual(['e', 'e', 'e']);
  });

  it('die when the actor deactivates itself', async () => {
    const { system, scheduler } = clockSystem();
    const ref = system.ref(Clock, 'c3');
    await ref.every(50, 'e');
    await ref.after(400, 'late');
    await scheduler.advance(120);
    await ref.sleep();
    await settle();
    expect(system.stats()).toMatchObject({ activations: 0, parked: 1, deactivated: 1 });
    await scheduler.advance(1000);
    // Reactivation restores the parked state; no tick arrived while parked, and none after.
    expect(await ref.ticks()).toEqual(['e', 'e']);
    await scheduler.advance(1000);
    expect(await ref.ticks()).toEqual(['e', 'e']);
    expect(system.stats()).toMatchObject({ activations: 1, parked: 0, activated: 2 });
  });

  it('die when the system deactivates the actor', async () => {
    const { system, scheduler } = clockSystem();
    const ref = system.ref(Clock, 'c4');
    await ref.every(50, 'e');
    await scheduler.advance(60);
    expect(system.deactivate('Clock', 'c4')).toBe(true);
    expect(system.deactivate('Clock', 'c4')).toBe(false); // already gone
    await scheduler.advance(1000);
    expect(await ref.ticks()).toEqual(['e']);
  });

  it('stop with the system', async () => {
    const { system, scheduler } = clockSystem();
    const ref = system.ref(Clock, 'c5');
    await ref.every(50, 'e');
    system.stop();
    await scheduler.advance(1000);
    expect(scheduler.pendingTimers).toBe(0);
  });

  it('copy their arguments when set, and give each delivery its own copy', async () => {
    const { system, scheduler } = clockSystem();
    const once = system.ref(Clock, 'c7');
    await once.afterWithObject(10, false);
    await scheduler.advance(10);
    expect(await once.values()).toEqual([{ v: 1, list: [1] }]);
    const repeating = system.ref(Clock, 'c8');
    await repeating.afterWithObject(10, true);
    await scheduler.advance(30);
    expect(await repeating.values()).toEqual([
      { v: 1, list: [1] },
      { v: 1, list: [1] },
      { v: 1, list: [1] },
    ]);
  });

  it('refuse an argument that cannot be sent in the turn that sets them, which rolls back', async () => {
    const { system, scheduler } = clockSystem();
    const ref = system.ref(Clock, 'c9');
    await expectRejection(ref.afterWithFunction(10), NotSerializable);
    expect(await ref.ticks()).toEqual([]);
    await scheduler.advance(100); // nothing was armed, so nothing fires (and nothing throws)
    expect(await ref.values()).toEqual([]);
  });

  it('refuse unknown methods and bad delays', async () => {
    const { system } = clockSystem();
    const ref = system.ref(Clock, 'c6');
    await expectRejection(ref.badTimer(10, 'nope'), UnknownMethod);
    await expectRejection(ref.badTimer(-1, 'tick'), InvalidArgument);
    await expectRejection(ref.badTimer(Infinity, 'tick'), InvalidArgument);
  });
});

describe('idle deactivation', () => {
  interface SessionState {
    visits: number;
    seen: Map<number, string>;
    tags: Set<string>;
    at: Date;
    blob: Uint8Array;
    big: bigint;
    nothing: undefined;
  }
  const Session = defineActor('Session', {
    idleTimeoutMs: 100,
    state: (): SessionState => ({ visits: 0, seen: new Map(), tags: new Set(), at: new Date(0), blob: new Uint8Array(0), big: 0n, nothing: undefined }),
    handlers: {
      visit(state, tag: string) {
        state.visits++;
        state.seen.set(state.visits, tag);
        state.tags.add(tag);
        state.at = new Date(1_700_000_000_000 + state.visits);
        state.blob = new Uint8Array([state.visits, 255]);
        state.big = 2n ** 70n + BigInt(state.visits);
        return state.visits;
      },
      get(state) {
        return state;
      },
      async hold(state, gate: number) {
        await holds[gate]!.promise;
        state.visits += 100;
      },
    },
  });
  const holds: Array<ReturnType<typeof deferred<void>>> = [];

  function sessionSystem(): { system: ActorSystem; scheduler: VirtualScheduler } {
    const scheduler = new VirtualScheduler();
    const system = makeSystem({ scheduler, idleSweepMs: 25 });
    system.registry.add(Session);
    return { system, scheduler };
  }

  it('parks the state of an idle actor, and a later call reactivates it with the same state', async () => {
    const { system, scheduler } = sessionSystem();
    const ref = system.ref(Session, 'alice/session');
    await ref.visit('home');
    await ref.visit('cart');
    const before = await ref.get();
    expect(system.stats()).toMatchObject({ activations: 1, parked: 0, activated: 1, deactivated: 0 });
    await scheduler.advance(50);
    expect(system.stats()).toMatchObject({ activations: 1, parked: 0 });
    await scheduler.advance(100);
    expect(system.stats()).toMatchObject({ activations: 0, parked: 1, deactivated: 1 });
    const after = await ref.get();
    expect(after).toEqual(before);
    expect(after.seen).toBeInstanceOf(Map);
    expect(after.tags).toBeInstanceOf(Set);
    expect(after.at).toBeInstanceOf(Date);
    expect(typeof after.big).toBe('bigint');
    expect(system.stats()).toMatchObject({ activations: 1, parked: 0, activated: 2 });
    expect(await ref.visit('again')).toBe(3);
  });

  it('keeps an actor that keeps getting messages', async () => {
    const { system, scheduler } = sessionSystem();
    const ref = system.ref(Session, 'busy');
    for (let i = 0; i < 10; i++) {
      await ref.visit(`v${i}`);
      await scheduler.advance(60);
    }
    expect(system.stats()).toMatchObject({ activations: 1, parked: 0, deactivated: 0 });
  });

  it('never deactivates an actor in the middle of a turn', async () => {
    const { system, scheduler } = sessionSystem();
    holds.length = 0;
    holds.push(deferred());
    const ref = system.ref(Session, 'holding');
    await ref.visit('x');
    const held = ref.hold(0);
    await scheduler.advance(500);
    expect(system.stats()).toMatchObject({ activations: 1, parked: 0 });
    holds[0]!.resolve();
    await held;
    await scheduler.advance(500);
    expect(system.stats()).toMatchObject({ activations: 0, parked: 1 });
    expect((await ref.get()).visits).toBe(101);
  });

  it('leaves actors without idleTimeoutMs alone', async () => {
    const { system, scheduler } = sessionSystem();
    await system.ref(Counter, 'forever').add(1);
    await scheduler.advance(10_000);
    expect(system.stats()).toMatchObject({ activations: 1, parked: 0 });
  });
});

describe('a parked-state store that answers later (a disk or a database)', () => {
  /** Holds each load until the test answers it, as a database would. */
  class SlowStore extends MemoryParkedStateStore {
    readonly loads: Array<{ id: string; answer: ReturnType<typeof deferred<Uint8Array | undefined>> }> = [];
    full = false;
    override load(_type: string, id: string): Promise<Uint8Array | undefined> {
      const answer = deferred<Uint8Array | undefined>();
      this.loads.push({ id, answer });
      return answer.promise;
    }
    accepting(): boolean {
      return !this.full;
    }
  }
  const Tally = defineActor('Tally', {
    idleTimeoutMs: 100,
    state: () => ({ items: [] as string[] }),
    handlers: {
      push(state, item: string) {
        state.items.push(item);
        return state.items.length;
      },
      pushThenFail(state, item: string) {
        state.items.push(item);
        throw new CodedError(`refused ${item}`, 'REFUSED');
      },
      items: (state) => state.items,
    },
  });

  function tallySystem(): { system: ActorSystem; store: SlowStore; scheduler: VirtualScheduler } {
    const scheduler = new VirtualScheduler();
    const store = new SlowStore();
    const system = makeSystem({ scheduler, idleSweepMs: 25, parkedStates: store });
    system.registry.add(Tally);
    return { system, store, scheduler };
  }

  it('runs the messages that waited for the load in order, on the loaded state', async () => {
    const { system, store } = tallySystem();
    const ref = system.ref(Tally, 'alice/list');
    const first = ref.push('b');
    const second = ref.push('c');
    await settle();
    expect(store.loads.map((load) => load.id)).toEqual(['alice/list']);
    expect(system.stats()).toMatchObject({ activations: 1, turns: 0 });
    store.loads[0]!.answer.resolve(encode({ items: ['a'] }));
    expect(await first).toBe(2);
    expect(await second).toBe(3);
    expect(await ref.items()).toEqual(['a', 'b', 'c']);
    expect(store.loads).toHaveLength(1);
  });

  it('rolls a failed first turn back to exactly what was loaded', async () => {
    const { system, store } = tallySystem();
    const ref = system.ref(Tally, 'rollback');
    const failing = ref.pushThenFail('x');
    await settle();
    store.loads[0]!.answer.resolve(encode({ items: ['loaded'] }));
    expect(await rejectionOf(failing)).toMatchObject({ code: 'REFUSED' });
    expect(await ref.items()).toEqual(['loaded']);
    expect(await rejectionOf(ref.pushThenFail('y'))).toMatchObject({ code: 'REFUSED' }); // a later turn: copied first
    expect(await ref.items()).toEqual(['loaded']);
  });

  it('starts fresh when the store has nothing', async () => {
    const { system, store } = tallySystem();
    const pushed = system.ref(Tally, 'new').push('x');
    await settle();
    store.loads[0]!.answer.resolve(undefined);
    expect(await pushed).toBe(1);
  });

  it('fails every waiting message with the load error, touches no other actor, and tries again on the next call', async () => {
    const { system, store } = tallySystem();
    const broken = system.ref(Tally, 'broken');
    const healthy = system.ref(Tally, 'healthy');
    const calls = [broken.push('1'), broken.push('2'), broken.tell.push('3')];
    const other = healthy.push('fine');
    await settle();
    store.loads[0]!.answer.reject(new CodedError("record of Tally 'broken' is corrupt", 'CORRUPT'));
    store.loads[1]!.answer.resolve(undefined);
    for (const call of calls.slice(0, 2)) expect(await rejectionOf(call as Promise<unknown>)).toMatchObject({ code: 'CORRUPT' });
    expect(await other).toBe(1);
    expect(system.hosts(activationKey('Tally', 'broken'), 'Tally', 'broken')).toBe(false);
    const again = broken.push('4');
    await settle();
    expect(store.loads.map((load) => load.id)).toEqual(['broken', 'healthy', 'broken']);
    store.loads[2]!.answer.resolve(encode({ items: [] }));
    expect(await again).toBe(1);
  });

  it('reports undecodable stored bytes as a DecodeError naming the actor', async () => {
    const { system, store } = tallySystem();
    const pushed = system.ref(Tally, 'garbled').push('x');
    await settle();
    store.loads[0]!.answer.resolve(new Uint8Array([0x92, 0x01])); // a truncated array
    const error = await rejectionOf(pushed);
    expect(error).toBeInstanceOf(DecodeError);
    expect((error as Error).message).toContain("Tally 'garbled'");
  });

  it('a migration freezing an actor still loading gets its state once the load is done', async () => {
    const { system, store } = tallySystem();
    const pushed = system.ref(Tally, 'moving').push('x');
    await settle();
    let paused = false;
    expect(system.freeze('Tally', 'moving', () => (paused = true))).toBe(true);
    expect(paused).toBe(false);
    expect(() => system.frozenState('Tally', 'moving')).toThrow(InvalidArgument);
    store.loads[0]!.answer.resolve(encode({ items: ['loaded'] }));
    await settle();
    expect(paused).toBe(true);
    expect(decode(system.frozenState('Tally', 'moving'))).toEqual({ items: ['loaded'] });
    system.thaw('Tally', 'moving');
    expect(await pushed).toBe(2);
  });

  it('keeps idle actors active while the store is not accepting', async () => {
    const { system, store, scheduler } = tallySystem();
    const pushed = system.ref(Tally, 'kept').push('x');
    await settle();
    store.loads[0]!.answer.resolve(undefined);
    await pushed;
    store.full = true;
    await scheduler.advance(500);
    expect(system.stats()).toMatchObject({ activations: 1, parked: 0, deactivated: 0 });
    store.full = false;
    await scheduler.advance(500);
    expect(system.stats()).toMatchObject({ activations: 0, parked: 1, deactivated: 1 });
  });
});

describe('what an evicter outside the system sees', () => {
  it('lists idle activations with their last use, and none that are busy', async () => {
    const scheduler = new VirtualScheduler();
    const system = makeSystem({ scheduler, trackLastUse: true });
    system.registry.add(Counter);
    await system.ref(Counter, 'early').add(1);
    await scheduler.advance(40);
    await system.ref(Counter, 'late').add(1);
    expect([...system.evictable()]).toEqual([
      ['Counter', 'early', 0],
      ['Counter', 'late', 40],
    ]);
    expect(system.deactivate('Counter', 'early')).toBe(true);
    expect([...system.evictable()].map(([, id]) => id)).toEqual(['late']);
  });
});

describe('stop', () => {
  it('rejects new asks with Stopped and tells throw Stopped', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 's');
    await ref.add(1);
    system.stop();
    await expectRejection(ref.add(1), Stopped, 'WADI_STOPPED');
    expect(thrownBy(() => ref.tell.add(1))).toBeInstanceOf(Stopped);
    system.stop(); // idempotent
    await expectRejection(ref.get(), Stopped);
  });

  it('fails asks still waiting for their reply with Stopped', async () => {
    const system = makeSystem();
    const gate = deferred();
    const Waiter = defineActor('Waiter', { state: () => ({}), handlers: { wait: () => gate.promise } });
    system.registry.add(Waiter);
    const waiting = system.ref(Waiter, 'w').wait();
    await settle();
    system.stop();
    await expectRejection(waiting, Stopped);
    expect(system.stats().pendingAsks).toBe(0);
    gate.resolve();
  });
});

describe('value semantics', () => {
  it('returns copies: mutating a returned object does not change the actor state', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'v1');
    await ref.push('a');
    const got = await ref.get();
    got.count = 999;
    got.items.push('intruder');
    got.meta.touched = true;
    got.meta.tags.add('intruder');
    got.meta.at.setTime(123);
    got.meta.blob[0] = 77;
    const again = await ref.get();
    expect(again.count).toBe(0);
    expect(again.items).toEqual(['a']);
    expect(again.meta).toEqual({ touched: false, at: new Date(0), tags: new Set(), blob: new Uint8Array([1, 2]) });
  });

  it('copies arguments: the caller changing an argument after sending does not reach the actor', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'v2');
    const arg = { name: 'original', list: [1, 2], when: new Date(5), bytes: new Uint8Array([1]) };
    const stored = ref.store(arg);
    arg.name = 'changed';
    arg.list.push(3);
    arg.when.setTime(6);
    arg.bytes[0] = 9;
    expect(await stored).toEqual({ name: 'original', list: [1, 2], when: new Date(5), bytes: new Uint8Array([1]) });
    expect((await ref.get()).stored).toEqual({ name: 'original', list: [1, 2], when: new Date(5), bytes: new Uint8Array([1]) });
  });

  it('copies tell arguments before the turn runs', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'v3');
    const arg = { name: 'original' };
    ref.tell.store(arg);
    arg.name = 'changed before the turn';
    expect((await ref.get()).stored).toEqual({ name: 'original' });
  });

  it('the handler changing its argument does not reach the caller', async () => {
    const system = makeSystem();
    const arg = { name: 'mine' };
    expect(await system.ref(Counter, 'v4').mutateArg(arg)).toBe('done');
    expect(arg.name).toBe('mine');
  });

  it('a returned value is not the stored one: storing then returning gives a copy', async () => {
    const system = makeSystem();
    const ref = system.ref(Counter, 'v5');
    const returned = (await ref.store({ deep: { n: 1 } })) as { deep: { n: number } };
    returned.deep.n = 2;
    expect((await ref.get()).stored).toEqual({ deep: { n: 1 } });
  });
});

describe('stateless actors', () => {
  it('run calls with no state and return copies', async () => {
    const shared = { n: 1 };
    const Pure = defineActor('Pure', {
      stateless: true,
      handlers: {
        double: (_state: undefined, n: number) => n * 2,
        shared: () => shared,
        async later(_state: undefined, v: string) {
          await Promise.resolve();
          return v.toUpperCase();
        },
        fail: () => {
          throw new CodedError('pure failure', 'E_PURE');
        },
      },
    });
    const system = makeSystem();
    system.registry.add(Pure);
    const ref = system.ref(Pure, 'any');
    expect(await ref.double(21)).toBe(42);
    expect(await ref.later('x')).toBe('X');
    const got = await ref.shared();
    got.n = 5;
    expect(shared.n).toBe(1);
    const error = (await rejectionOf(ref.fail())) as CodedError;
    expect(error.name).toBe('CodedError');
    expect(error.code).toBe('E_PURE');
    expect(system.stats().activations).toBe(0);
  });
});

describe('an actor whose state can no longer be copied', () => {
  // The state contract is "plain data the codec can carry"; a handler that breaks it must only
  // hurt its own actor: no stalled neighbours, no crash, no lost state.
  interface PoisonState {
    n: number;
    fn?: unknown;
  }
  const Poison = defineActor('Poison', {
    idleTimeoutMs: 100,
    state: (): PoisonState => ({ n: 0 }),
    handlers: {
      poison(state) {
        state.fn = () => 1;
        return 'poisoned';
      },
      inc(state) {
        return ++state.n;
      },
    },
  });

  it('fails its own later turns with NotSerializable without stalling other actors', async () => {
    const scheduler = new VirtualScheduler();
    const system = makeSystem({ scheduler, askTimeoutMs: 1000 });
    system.registry.add(Poison);
    const bad = system.ref(Poison, 'bad');
    const good = system.ref(Poison, 'good');
    expect(await bad.poison()).toBe('poisoned');
    // Both messages are scheduled in the same batch of turns.
    const results = Promise.allSettled([bad.inc(), good.inc()]);
    await settle();
    await scheduler.advance(2000); // if anything hangs, it times out instead of passing
    const [fromBad, fromGood] = await results;
    expect(fromBad.status).toBe('rejected');
    expect((fromBad as PromiseRejectedResult).reason).toBeInstanceOf(NotSerializable);
    expect((fromBad as PromiseRejectedResult).reason.message).toMatch(/the state of Poison 'bad' can no longer be copied.*an earlier turn stored something.*function/);
    expect(fromGood).toEqual({ status: 'fulfilled', value: 1 });
    expect(await good.inc()).toBe(2);
  });

  it('is kept in memory by the idle sweep rather than crashing it or losing the state', async () => {
    const scheduler = new VirtualScheduler();
    const system = makeSystem({ scheduler, idleSweepMs: 25 });
    system.registry.add(Poison);
    await system.ref(Poison, 'bad').poison();
    await system.ref(Poison, 'fine').inc();
    await scheduler.advance(500);
    // The healthy actor was parked; the poisoned one could not be, so it stays active.
    expect(system.stats()).toMatchObject({ activations: 1, parked: 1, deactivated: 1 });
    expect(system.deactivate('Poison', 'bad')).toBe(false);
    expect(await system.ref(Poison, 'fine').inc()).toBe(2);
  });
});

describe('what a thread hosts', () => {
  it('reports activations before their first turn, and lists active and parked actors', async () => {
    const activated: string[] = [];
    const system = new ActorSystem({ onActivated: (type, id) => activated.push(`${type}/${id}`) });
    system.registry.add(Counter);
    const a = system.ref(Counter, 'a');
    const b = system.ref(Counter, 'b');
    await a.add(1);
    await b.add(2);
    expect(activated).toEqual(['Counter/a', 'Counter/b']);
    expect(system.deactivate('Counter', 'a')).toBe(true);
    expect(system.hostedIds().map(([type, id]) => `${type}/${id}`).sort()).toEqual(['Counter/a', 'Counter/b']);
    expect(await a.add(1)).toBe(2);
    expect(activated).toEqual(['Counter/a', 'Counter/b', 'Counter/a']);
    expect(system.hostedIds().length).toBe(2);
    system.stop();
  });
});

describe('turn observer (replication)', () => {
  it('sees each turn that ended without error, with its state, and may hold its reply', async () => {
    const system = makeSystem();
    const seen: [string, number][] = [];
    let release: ((error?: unknown) => void) | undefined;
    system.setTurnObserver({
      committed(def, id, _key, state) {
        seen.push([`${def.name}:${id}`, (state as CounterState).count]);
        if ((state as CounterState).count !== 3) return undefined;
        return { wait: (go) => void (release = go) };
      },
    });
    const ref = system.ref(Counter, 'held');
    expect(await ref.add(1)).toBe(1);
    await rejectionOf(ref.failSync());
    let replied = false;
    const reply = ref.add(2).then((value) => {
      replied = true;
      return value;
    });
    await settle();
    // The turn ran (its state is kept) but its caller has not heard of it.
    expect(replied).toBe(false);
    expect(seen).toEqual([
      ['Counter:held', 1],
      ['Counter:held', 3],
    ]);
    release!();
    expect(await reply).toBe(3);
  });

  it('fails a held reply with the error it is released with', async () => {
    const system = makeSystem();
    system.setTurnObserver({ committed: () => ({ wait: (go) => go(new Overloaded('replicas refused')) }) });
    const error = await rejectionOf(system.ref(Counter, 'refused').add(1));
    expect(error).toBeInstanceOf(Overloaded);
  });
});

describe('defineActor replication option', () => {
  it("defaults to 'sync', takes 'async' and 'none', refuses anything else; stateless types replicate nothing", () => {
    expect(Counter.replication).toBe('sync');
    expect(defineActor('Loose', { state: () => ({}), replication: 'async', handlers: { a: () => 1 } }).replication).toBe('async');
    expect(defineActor('Stateless', { stateless: true, handlers: { a: () => 1 } }).replication).toBe('none');
    expect(thrownBy(() => defineActor('Bad', { state: () => ({}), replication: 'eventually' as never, handlers: { a: () => 1 } }))).toBeInstanceOf(InvalidArgument);
  });
});

describe('expiry', () => {
  /** A session that lives until `until` (wall clock), or forever while `until` is 0. */
  const Expiring = defineActor('Expiring', {
    idleTimeoutMs: 100,
    state: () => ({ until: 0, visits: 0 }),
    expiresAt: (state) => (state.until === 0 ? undefined : state.until),
    handlers: {
      visit(state, until: number) {
        state.until = until;
        return ++state.visits;
      },
    },
  });

  function expiringSystem(options: Partial<ActorSystemOptions> = {}) {
    const scheduler = new VirtualScheduler();
    let wall = 1_000_000;
    const expired: string[] = [];
    const system = makeSystem({ scheduler, idleSweepMs: 25, wallClock: () => wall, onExpired: (type, id) => expired.push(`${type}/${id}`), ...options });
    system.registry.add(Expiring);
    return { system, scheduler, expired, setWall: (ms: number) => (wall = ms) };
  }

  it('drops an actor found expired when it goes idle, instead of parking it; its next call starts fresh', async () => {
    const { system, scheduler, expired, setWall } = expiringSystem();
    const ref = system.ref(Expiring, 'gone');
    await ref.visit(1_000_050);
    await ref.visit(1_000_050);
    setWall(1_000_050);
    await scheduler.advance(150);
    expect(system.stats()).toMatchObject({ activations: 0, parked: 0, deactivated: 1, expired: 1 });
    expect(expired).toEqual(['Expiring/gone']);
    expect(await ref.visit(0)).toBe(1);
  });

  it('parks an actor that has not expired, and drops its parked state once it has', async () => {
    const { system, scheduler, expired, setWall } = expiringSystem();
    const later = system.ref(Expiring, 'later');
    const never = system.ref(Expiring, 'never');
    await later.visit(2_000_000);
    await never.visit(0);
    await scheduler.advance(150);
    expect(system.stats()).toMatchObject({ activations: 0, parked: 2, expired: 0 });
    expect(system.dropExpired(100)).toBe(0);
    setWall(2_000_000);
    expect(system.dropExpired(100)).toBe(1);
    expect(expired).toEqual(['Expiring/later']);
    expect(system.stats()).toMatchObject({ parked: 1, expired: 1 });
    // The one without an expiry stays parked with its state; the dropped one starts fresh.
    expect(await never.visit(0)).toBe(2);
    expect(await later.visit(0)).toBe(1);
  });

  it('looks at no more parked states per call than asked, and goes on from there', async () => {
    const { system, scheduler, setWall } = expiringSystem();
    for (let i = 0; i < 10; i++) await system.ref(Expiring, `s${i}`).visit(1_500_000);
    await scheduler.advance(150);
    setWall(1_500_000);
    const dropped = [system.dropExpired(4), system.dropExpired(4), system.dropExpired(4), system.dropExpired(4)];
    expect(dropped).toEqual([4, 4, 2, 0]);
    expect(system.stats()).toMatchObject({ parked: 0, expired: 10 });
  });

  it('gives an adopted parked state the expiry its type computes from it', async () => {
    const { system, setWall } = expiringSystem();
    expect(system.adoptParked('Expiring', 'adopted', encode({ until: 1_200_000, visits: 7 }))).toBe(true);
    expect(system.dropExpired(10)).toBe(0);
    setWall(1_200_000);
    expect(system.dropExpired(10)).toBe(1);
    expect(await system.ref(Expiring, 'adopted').visit(0)).toBe(1);
  });

  it('counts a hook that throws or answers NaN as never expiring', async () => {
    const Odd = defineActor('Odd', {
      idleTimeoutMs: 100,
      state: () => ({ mode: 'ok' }),
      expiresAt: (state) => {
        if (state.mode === 'throw') throw new Error('hook failed');
        return Number.NaN;
      },
      handlers: {
        set(state, mode: string) {
          state.mode = mode;
        },
      },
    });
    const { system, scheduler } = expiringSystem();
    system.registry.add(Odd);
    await system.ref(Odd, 'a').set('throw');
    await system.ref(Odd, 'b').set('nan');
    await scheduler.advance(150);
    expect(system.dropExpired(10)).toBe(0);
    expect(system.stats()).toMatchObject({ parked: 2, expired: 0 });
  });

  it('takes an expiry of Infinity for never, and -Infinity for already', async () => {
    const Extreme = defineActor('Extreme', {
      idleTimeoutMs: 100,
      state: () => ({ at: 0 }),
      expiresAt: (state) => state.at,
      handlers: {
        set(state, at: number) {
          state.at = at;
        },
      },
    });
    const { system, scheduler, expired, setWall } = expiringSystem();
    system.registry.add(Extreme);
    await system.ref(Extreme, 'never').set(Infinity);
    await system.ref(Extreme, 'already').set(-Infinity);
    await scheduler.advance(150);
    expect(expired).toEqual(['Extreme/already']);
    setWall(Number.MAX_SAFE_INTEGER);
    expect(system.dropExpired(10)).toBe(0);
    expect(system.stats()).toMatchObject({ parked: 1 });
  });

  it('refuses an expiresAt that is not a function, or on a stateless type', () => {
    expect(() => defineActor('Bad', { state: () => ({}), handlers: {}, expiresAt: 5 as never })).toThrow(InvalidArgument);
    expect(() => defineActor('Bad', { stateless: true, handlers: {}, expiresAt: () => 1 })).toThrow(/stateless/);
  });
});
