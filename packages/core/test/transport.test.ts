/**
 * Asks and tells between two actor systems, through the `Router` and `Transport` interfaces the
 * core exposes. The transport here is the test's own: it encodes every envelope with the codec and
 * hands the decoded copy to the other system on a later macrotask, as a thread or node link would.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ActorSystem,
  InvalidArgument,
  LOCAL,
  NotSerializable,
  Overloaded,
  Timeout,
  Unavailable,
  UnknownActorType,
  WorkerCrashed,
  decode,
  defineActor,
  encode,
  type AnyActorDef,
  type Envelope,
  type Scheduler,
  type Transport,
} from '../src/index.js';
import { VirtualScheduler, deferred, rejectionOf, settle, thrownBy } from './helpers.js';

class CodedError extends Error {
  override name = 'CodedError';
  readonly code = 'E_REMOTE';
}

const gate = { current: deferred() };

const Remote = defineActor('Remote', {
  state: () => ({ log: [] as unknown[], n: 0 }),
  mailboxCapacity: 2,
  handlers: {
    add(state, k: number) {
      state.n += k;
      return state.n;
    },
    record(state, value: unknown) {
      state.log.push(value);
      return state.log;
    },
    read(state) {
      return state;
    },
    fail(state) {
      state.n = -1;
      throw new CodedError('remote failure');
    },
    invalid() {
      throw new InvalidArgument('remote says no');
    },
    returnFunction() {
      return () => 1;
    },
    async wait(state) {
      await gate.current.promise;
      return state.n;
    },
  },
});

const Local = defineActor('Local', { state: () => ({}), handlers: { ping: () => 'pong' } });

/** A link that copies each envelope through the codec and delivers it on a later macrotask. */
class Wire implements Transport {
  peers: ActorSystem[] = [];
  /** When set, envelopes are kept here instead of delivered. */
  held: Array<[number, Envelope]> | undefined;
  sent = 0;
  send(destination: number, envelope: Envelope): void {
    const bytes = encode(envelope); // throws NotSerializable synchronously, as the interface asks
    this.sent++;
    const copy = decode(bytes) as Envelope;
    if (this.held) {
      this.held.push([destination, copy]);
      return;
    }
    setImmediate(() => this.peers[destination]!.receive(copy));
  }
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const [destination, envelope] of held) this.peers[destination]!.receive(envelope);
  }
}

const systems: ActorSystem[] = [];
afterEach(() => {
  for (const system of systems.splice(0)) system.stop();
});

/** System 0 (the caller) routes `Remote` to system 1 (the host). */
function pair(options: { scheduler?: Scheduler; hostKnowsRemote?: boolean } = {}): { caller: ActorSystem; host: ActorSystem; wire: Wire } {
  const wire = new Wire();
  const caller = new ActorSystem({
    selfIndex: 0,
    scheduler: options.scheduler,
    router: { route: (def: AnyActorDef) => (def.name === 'Remote' ? 1 : LOCAL) },
    transport: wire,
  });
  const host = new ActorSystem({ selfIndex: 1, transport: wire });
  caller.registry.add(Remote);
  caller.registry.add(Local);
  if (options.hostKnowsRemote !== false) host.registry.add(Remote);
  wire.peers = [caller, host];
  systems.push(caller, host);
  return { caller, host, wire };
}

describe('asks and tells across systems', () => {
  it('runs the turn on the host and returns the result to the caller', async () => {
    const { caller, host } = pair();
    const ref = caller.ref(Remote, 'r1');
    expect(await ref.add(2)).toBe(2);
    expect(await ref.add(3)).toBe(5);
    expect(await caller.ref(Local, 'here').ping()).toBe('pong');
    expect(caller.stats().activations).toBe(1); // only Local lives on the caller
    expect(host.stats().activations).toBe(1);
  });

  it('carries codec values both ways', async () => {
    const { caller } = pair();
    const value = { when: new Date(7), tags: new Set(['a']), map: new Map([[1, 'x']]), bytes: new Uint8Array([1, 2]), big: 2n ** 80n, nothing: undefined };
    const log = await caller.ref(Remote, 'r2').record(value);
    expect(log).toEqual([value]);
  });

  it('delivers tells in the order they were sent', async () => {
    const { caller } = pair();
    const ref = caller.ref(Remote, 'r3');
    for (let i = 0; i < 2; i++) ref.tell.record(i);
    await settle();
    for (let i = 2; i < 4; i++) ref.tell.record(i);
    await settle();
    expect((await ref.read()).log).toEqual([0, 1, 2, 3]);
  });

  it('brings errors back with name, message and code, and rolls the host state back', async () => {
    const { caller } = pair();
    const ref = caller.ref(Remote, 'r4');
    await ref.add(10);
    const error = (await rejectionOf(ref.fail())) as CodedError;
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('CodedError');
    expect(error.message).toBe('remote failure');
    expect(error.code).toBe('E_REMOTE');
    expect((await ref.read()).n).toBe(10);
    const invalid = await rejectionOf(ref.invalid());
    expect(invalid).toBeInstanceOf(InvalidArgument);
    expect((invalid as InvalidArgument).message).toBe('remote says no');
  });

  it('UnknownActorType when the host does not know the type', async () => {
    const { caller } = pair({ hostKnowsRemote: false });
    const error = await rejectionOf(caller.ref(Remote, 'r5').add(1));
    expect(error).toBeInstanceOf(UnknownActorType);
    expect((error as UnknownActorType).code).toBe('WADI_UNKNOWN_ACTOR_TYPE');
  });

  it('NotSerializable for an argument the link cannot carry, at once', async () => {
    const { caller, wire } = pair();
    const ref = caller.ref(Remote, 'r6');
    expect(await rejectionOf(ref.record(() => 1))).toBeInstanceOf(NotSerializable);
    expect(thrownBy(() => ref.tell.record(Symbol('s')))).toBeInstanceOf(NotSerializable);
    expect(wire.sent).toBe(0);
    expect(caller.stats().pendingAsks).toBe(0);
  });

  it('NotSerializable when the host cannot send the reply back', async () => {
    const { caller } = pair();
    expect(await rejectionOf(caller.ref(Remote, 'r7').returnFunction())).toBeInstanceOf(NotSerializable);
  });

  it('Overloaded from a full remote mailbox', async () => {
    const { caller } = pair();
    gate.current = deferred();
    const ref = caller.ref(Remote, 'r8');
    const running = ref.wait();
    await settle();
    const queued = [ref.add(1), ref.add(1)];
    const overloaded = ref.add(1);
    expect(await rejectionOf(overloaded)).toBeInstanceOf(Overloaded);
    gate.current.resolve();
    expect(await running).toBe(0);
    expect(await Promise.all(queued)).toEqual([1, 2]);
  });

  it('Unavailable when there is no transport to the destination', async () => {
    const system = new ActorSystem({ router: { route: () => 3 } });
    systems.push(system);
    system.registry.add(Remote);
    expect(await rejectionOf(system.ref(Remote, 'x').add(1))).toBeInstanceOf(Unavailable);
    expect(thrownBy(() => system.ref(Remote, 'x').tell.add(1))).toBeInstanceOf(Unavailable);
  });
});

describe('replies that do not come', () => {
  it('time out, and a late reply is dropped', async () => {
    const scheduler = new VirtualScheduler();
    const { caller, wire } = pair({ scheduler });
    wire.held = [];
    let outcome: unknown = 'pending';
    const ask = caller.ref(Remote, 'late', { timeoutMs: 200 }).add(1).then(
      (value) => (outcome = value),
      (error) => (outcome = error),
    );
    await scheduler.advance(100);
    expect(outcome).toBe('pending');
    await scheduler.advance(500);
    await ask;
    expect(outcome).toBeInstanceOf(Timeout);
    // The ask reaches the host only now; its reply finds nobody waiting.
    wire.release();
    await settle();
    expect(outcome).toBeInstanceOf(Timeout);
    expect(caller.stats().pendingAsks).toBe(0);
  });

  it('fail with the given error when their destination is declared gone', async () => {
    const { caller, wire } = pair();
    wire.held = [];
    const ref = caller.ref(Remote, 'gone');
    const asks = [ref.add(1), ref.read()];
    const local = caller.ref(Local, 'stays').ping();
    expect(caller.failPendingTo(1, () => new WorkerCrashed('host thread died'))).toBe(2);
    for (const ask of asks) {
      const error = await rejectionOf(ask);
      expect(error).toBeInstanceOf(WorkerCrashed);
      expect(error).toBeInstanceOf(Unavailable);
    }
    expect(await local).toBe('pong');
  });
});
