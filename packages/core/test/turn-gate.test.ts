/**
 * The actor system's turn gate (`ActorSystemOptions.turnGate`): while it gives a reason, no
 * stateful actor is activated and no turn runs (messages already queued fail with that reason,
 * and the state stays what the last turn committed); while it says 'wait', messages are accepted
 * in order but no turn runs; stateless types are not gated; once it opens, everything runs again.
 */
import { describe, expect, it } from 'vitest';
import { ActorSystem, GATE_POLL_MS, NoQuorum, Unavailable, defineActor, type Envelope, type TurnGateAnswer } from '../src/index.js';
import { VirtualScheduler, deferred, settle } from './helpers.js';

/** What `slowAdd` waits for (a turn that is running while the gate closes). */
let blocker: Promise<void> = Promise.resolve();

const Counter = defineActor('Counter', {
  state: () => ({ count: 0, ticks: 0 }),
  handlers: {
    add(state, n: number) {
      state.count += n;
      return state.count;
    },
    async slowAdd(state, n: number) {
      await blocker;
      state.count += n;
      return state.count;
    },
    startTicking(state) {
      this.timers.every(10, 'tick');
      return state.ticks;
    },
    tick(state) {
      state.ticks++;
    },
    read(state) {
      return state;
    },
  },
});

const Pure = defineActor('Pure', { stateless: true, handlers: { double: (_state: undefined, n: number) => n * 2 } });

function setup(): { system: ActorSystem; scheduler: VirtualScheduler; close(): void; open(): void; hold(): void; failures: string[] } {
  let refusal: TurnGateAnswer;
  const scheduler = new VirtualScheduler();
  const failures: string[] = [];
  const system = new ActorSystem({
    scheduler,
    turnGate: () => refusal,
    onTellFailure: (_type, _id, method, error) => failures.push(`${method}: ${(error as Error).name}`),
  });
  system.registry.add(Counter);
  system.registry.add(Pure);
  return {
    system,
    scheduler,
    failures,
    close: () => (refusal = new NoQuorum('n1', 1, 3)),
    open: () => (refusal = undefined),
    hold: () => (refusal = 'wait'),
  };
}

describe('the turn gate', () => {
  it('refuses asks and tells while closed, activates nothing, and serves again once open', async () => {
    const { system, close, open, failures } = setup();
    close();
    const refused = system.ref(Counter, 'a').add(1);
    await expect(refused).rejects.toBeInstanceOf(NoQuorum);
    await expect(refused).rejects.toBeInstanceOf(Unavailable);
    expect(() => system.ref(Counter, 'a').tell.add(1)).toThrow(NoQuorum);
    expect(system.stats().activations).toBe(0);
    // From another thread: the failure goes back as a reply.
    const replies: Envelope[] = [];
    const withTransport = new ActorSystem({ turnGate: () => new NoQuorum('n1', 1, 3), transport: { send: (_destination, envelope) => replies.push(envelope) } });
    withTransport.registry.add(Counter);
    withTransport.receive([0, 7, 2, 'Counter', 'b', 'add', [1]] as unknown as Envelope);
    expect(replies).toHaveLength(1);
    expect(replies[0]![0]).toBe(3);
    open();
    expect(await system.ref(Counter, 'a').add(2)).toBe(2);
    expect(failures).toEqual([]);
  });

  it('a turn queued before the gate closed does not run: its caller gets the refusal and the state is untouched', async () => {
    const { system, close, open } = setup();
    const hold = deferred();
    blocker = hold.promise;
    const ref = system.ref(Counter, 'a');
    expect(await ref.add(1)).toBe(1);
    const running = ref.slowAdd(10);
    const queued = ref.add(100);
    await settle();
    close();
    // The running turn began with the gate open: it finishes. The queued one is refused.
    hold.resolve();
    expect(await running).toBe(11);
    await expect(queued).rejects.toBeInstanceOf(NoQuorum);
    open();
    expect((await ref.read()).count).toBe(11);
  });

  it('timer turns stop while closed and resume once open; stateless types are never gated', async () => {
    const { system, scheduler, close, open, failures } = setup();
    const ref = system.ref(Counter, 'a');
    await ref.startTicking();
    await scheduler.advance(35);
    const before = (await ref.read()).ticks;
    expect(before).toBe(3);
    close();
    expect(await system.ref(Pure, 'any').double(21)).toBe(42);
    await scheduler.advance(50);
    expect(failures.length).toBe(5);
    expect(failures.every((line) => line === 'tick: NoQuorum')).toBe(true);
    open();
    expect((await ref.read()).ticks).toBe(before);
    await scheduler.advance(20);
    expect((await ref.read()).ticks).toBe(before + 2);
  });

  it("while it says 'wait', messages are accepted in order but no turn runs, then they run once it opens", async () => {
    const { system, scheduler, hold, open } = setup();
    const ref = system.ref(Counter, 'a');
    hold();
    const first = ref.add(1);
    ref.tell.add(10);
    const third = ref.add(100);
    await scheduler.advance(5 * GATE_POLL_MS);
    expect(system.stats()).toMatchObject({ activations: 1, queued: 3, turns: 0 });
    expect(system.isQuiet()).toBe(false);
    open();
    await scheduler.advance(GATE_POLL_MS);
    expect(await first).toBe(1);
    expect(await third).toBe(111);
  });

  it("turns of an active session wait while it says 'wait', and fail with its reason once it refuses", async () => {
    const { system, scheduler, hold, close, open } = setup();
    const ref = system.ref(Counter, 'a');
    expect(await ref.add(1)).toBe(1);
    hold();
    const waiting = ref.add(5);
    let settled = false;
    void waiting.then(
      () => (settled = true),
      () => (settled = true),
    );
    await scheduler.advance(5 * GATE_POLL_MS);
    expect(settled).toBe(false);
    close();
    await scheduler.advance(GATE_POLL_MS);
    await expect(waiting).rejects.toBeInstanceOf(NoQuorum);
    open();
    expect((await ref.read()).count).toBe(1);
  });

  it('an idle actor whose messages wait for the gate is not deactivated with them', async () => {
    const Idle = defineActor('IdleCounter', {
      idleTimeoutMs: 50,
      state: () => ({ count: 0 }),
      handlers: {
        add(state, n: number) {
          state.count += n;
          return state.count;
        },
      },
    });
    const scheduler = new VirtualScheduler();
    let gate: TurnGateAnswer;
    const system = new ActorSystem({ scheduler, idleSweepMs: 10, turnGate: () => gate });
    system.registry.add(Idle);
    const ref = system.ref(Idle, 'a');
    expect(await ref.add(1)).toBe(1);
    gate = 'wait';
    const waiting = ref.add(2);
    await scheduler.advance(500); // many idle sweeps, long past its idle timeout
    expect(system.stats()).toMatchObject({ activations: 1, queued: 1, deactivated: 0 });
    expect(system.deactivate('IdleCounter', 'a')).toBe(false);
    gate = undefined;
    await scheduler.advance(GATE_POLL_MS);
    expect(await waiting).toBe(3);
  });
});

