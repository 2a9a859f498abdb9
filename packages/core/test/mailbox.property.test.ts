/**
 * Properties of mailboxes and turns under random interleavings:
 *
 * - turns never overlap per actor: every actor's log of enter/exit events alternates, and each
 *   exit matches the enter before it;
 * - per-sender order: each sender numbers its messages, and every actor sees each sender's
 *   numbers in increasing order;
 * - every message is processed exactly once, asks resolve with their own handler's result, and
 *   failed turns leave no trace in the state (rollback).
 *
 * One property lets fast-check's scheduler pick the order in which every pending await resumes
 * (deterministic, shrinkable interleavings); the other uses real macrotasks (setTimeout 0..2 ms)
 * and microtask hops inside handlers and between sends. Neither asserts anything about time.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ActorSystem, defineActor, type ActorContext } from '../src/index.js';

/** What one sender sends: to which actor, how the handler delays, and how the sender paces. */
interface Send {
  actor: number;
  /** Delay steps inside the handler: 0 = synchronous handler. */
  hops: number;
  /** Real-timer variant only: also sleep this many ms (0..2) inside the handler. */
  sleepMs: number;
  /** The handler fails (after its delay) and its state change must be rolled back. */
  fails: boolean;
  /** Ask (and keep the promise) or tell. */
  ask: boolean;
  /** Pause the sender before sending this one (yield to other senders). */
  pause: number;
}

interface Plan {
  actors: number;
  senders: Send[][];
}

const send = (actors: number): fc.Arbitrary<Send> =>
  fc.record({
    actor: fc.nat({ max: actors - 1 }),
    hops: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 })),
    sleepMs: fc.integer({ min: 0, max: 2 }),
    fails: fc.integer({ min: 0, max: 6 }).map((n) => n === 0),
    ask: fc.boolean(),
    pause: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 })),
  });

const plan: fc.Arbitrary<Plan> = fc.integer({ min: 1, max: 4 }).chain((actors) =>
  fc.record({
    actors: fc.constant(actors),
    senders: fc.array(fc.array(send(actors), { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 4 }),
  }),
);

interface Event {
  actor: string;
  kind: 'enter' | 'exit';
  sender: number;
  seq: number;
}

interface WorkerState {
  /** Highest sequence number seen per sender (including failed turns: they were seen). */
  applied: Array<[sender: number, seq: number]>;
  count: number;
}

class PlannedFailure extends Error {
  override name = 'PlannedFailure';
  readonly code = 'E_PLANNED';
}

/**
 * Builds the actor type for one run. `delay(hops, sleepMs)` is how a handler waits: through
 * fast-check's scheduler, or through microtasks and real timers.
 */
function workerType(log: Event[], delay: (hops: number, sleepMs: number) => Promise<void>) {
  function step(this: ActorContext, state: WorkerState, sender: number, seq: number, hops: number, sleepMs: number, fails: boolean): unknown {
    log.push({ actor: this.id, kind: 'enter', sender, seq });
    // The state change happens before any await, so a failure must really roll it back.
    state.applied.push([sender, seq]);
    state.count++;
    const finish = (): number => {
      log.push({ actor: this.id, kind: 'exit', sender, seq });
      if (fails) throw new PlannedFailure(`planned failure ${sender}:${seq}`);
      return seq;
    };
    if (hops === 0 && sleepMs === 0) return finish();
    return delay(hops, sleepMs).then(finish);
  }
  return defineActor('Worker', {
    state: (): WorkerState => ({ applied: [], count: 0 }),
    handlers: {
      step,
      read(state: WorkerState) {
        return state;
      },
    },
  });
}

/** Sends the whole plan; returns what each ask settled to and each actor's final state. */
async function runPlan(
  system: ActorSystem,
  def: ReturnType<typeof workerType>,
  p: Plan,
  pause: (steps: number) => Promise<void>,
  waitFor: <T>(promise: Promise<T>) => Promise<T>,
): Promise<{ asks: Array<{ sender: number; seq: number; fails: boolean; result: PromiseSettledResult<unknown> }>; finals: WorkerState[] }> {
  const asks: Array<{ sender: number; seq: number; fails: boolean; promise: Promise<unknown> }> = [];
  const senders = p.senders.map(async (messages, sender) => {
    for (let seq = 0; seq < messages.length; seq++) {
      const m = messages[seq]!;
      if (m.pause > 0) await pause(m.pause);
      const ref = system.ref(def, `actor-${m.actor}`);
      if (m.ask) {
        const promise = ref.step(sender, seq, m.hops, m.sleepMs, m.fails);
        promise.catch(() => undefined); // looked at later, with allSettled: not an unhandled rejection
        asks.push({ sender, seq, fails: m.fails, promise });
      } else ref.tell.step(sender, seq, m.hops, m.sleepMs, m.fails);
    }
  });
  const everything = (async () => {
    await Promise.all(senders);
    const settled = await Promise.allSettled(asks.map((a) => a.promise));
    // Every sender is done sending, so a final ask to each actor queues behind every tell.
    const finals = await Promise.all(Array.from({ length: p.actors }, (_, i) => system.ref(def, `actor-${i}`).read()));
    return { settled, finals };
  })();
  const { settled, finals } = await waitFor(everything);
  return { asks: asks.map((a, i) => ({ sender: a.sender, seq: a.seq, fails: a.fails, result: settled[i]! })), finals };
}

function checkRun(p: Plan, log: Event[], outcome: Awaited<ReturnType<typeof runPlan>>): void {
  // 1. Turns never overlap per actor: enter/exit alternate and match.
  const byActor = new Map<string, Event[]>();
  for (const event of log) {
    let events = byActor.get(event.actor);
    if (events === undefined) byActor.set(event.actor, (events = []));
    events.push(event);
  }
  for (const [actor, events] of byActor) {
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      const expected = i % 2 === 0 ? 'enter' : 'exit';
      if (event.kind !== expected) {
        throw new Error(`overlapping turns on ${actor}: event ${i} is ${event.kind} ${event.sender}:${event.seq}, expected ${expected}`);
      }
      if (expected === 'exit') {
        const enter = events[i - 1]!;
        expect([event.sender, event.seq], `exit matches enter on ${actor}`).toEqual([enter.sender, enter.seq]);
      }
    }
    expect(events.length % 2, `every turn on ${actor} finished`).toBe(0);
  }

  // 2. Per-sender order, per actor; 3. every message processed exactly once, where it was sent.
  for (const [actor, events] of byActor) {
    const last = new Map<number, number>();
    for (const event of events) {
      if (event.kind !== 'enter') continue;
      const previous = last.get(event.sender) ?? -1;
      if (event.seq <= previous) throw new Error(`${actor} saw sender ${event.sender}'s message ${event.seq} after ${previous}`);
      last.set(event.sender, event.seq);
    }
  }
  const expected = p.senders.flatMap((messages, sender) => messages.map((m, seq) => `actor-${m.actor} ${sender}:${seq}`)).sort();
  const seen = log.filter((e) => e.kind === 'enter').map((e) => `${e.actor} ${e.sender}:${e.seq}`).sort();
  expect(seen).toEqual(expected);

  // 4. Asks settle with their own result, or with the handler's error (name, message, code kept).
  for (const ask of outcome.asks) {
    if (ask.fails) {
      expect(ask.result.status).toBe('rejected');
      const reason = (ask.result as PromiseRejectedResult).reason as PlannedFailure;
      expect(reason.name).toBe('PlannedFailure');
      expect(reason.code).toBe('E_PLANNED');
      expect(reason.message).toBe(`planned failure ${ask.sender}:${ask.seq}`);
    } else {
      expect(ask.result).toEqual({ status: 'fulfilled', value: ask.seq });
    }
  }

  // 5. Rollback: the final state holds exactly the successful messages, in processing order.
  outcome.finals.forEach((state, i) => {
    const actor = `actor-${i}`;
    const succeeded: Array<[number, number]> = (byActor.get(actor) ?? [])
      .filter((e) => e.kind === 'enter' && !p.senders[e.sender]![e.seq]!.fails)
      .map((e) => [e.sender, e.seq]);
    expect(state.applied).toEqual(succeeded);
    expect(state.count).toBe(succeeded.length);
  });
}

describe('mailboxes under random interleavings (property)', () => {
  it('fast-check scheduler decides every resumption: no overlapping turns, per-sender order, rollback', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), plan, async (s, p) => {
        const log: Event[] = [];
        const delay = async (hops: number): Promise<void> => {
          for (let i = 0; i < hops; i++) await s.schedule(Promise.resolve(), 'handler hop');
        };
        const def = workerType(log, delay);
        const system = new ActorSystem({ onTellFailure: () => undefined });
        system.registry.add(def);
        try {
          const pause = async (steps: number): Promise<void> => {
            for (let i = 0; i < steps; i++) await s.schedule(Promise.resolve(), 'sender pause');
          };
          const outcome = await runPlan(system, def, p, pause, (promise) => s.waitFor(promise));
          checkRun(p, log, outcome);
        } finally {
          system.stop();
        }
      }),
      { numRuns: 100 },
    );
  });

  it('real macrotasks and microtasks inside handlers and between sends: no overlapping turns, per-sender order, rollback', async () => {
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
    const hop = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) await Promise.resolve();
    };
    await fc.assert(
      fc.asyncProperty(plan, async (p) => {
        const log: Event[] = [];
        const delay = async (hops: number, sleepMs: number): Promise<void> => {
          await hop(hops);
          if (sleepMs > 0 || hops % 2 === 1) await sleep(sleepMs);
        };
        const def = workerType(log, delay);
        const system = new ActorSystem({ onTellFailure: () => undefined });
        system.registry.add(def);
        try {
          const pause = async (steps: number): Promise<void> => (steps === 3 ? sleep(0) : hop(steps));
          const outcome = await runPlan(system, def, p, pause, (promise) => promise);
          checkRun(p, log, outcome);
        } finally {
          system.stop();
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe('long runs of synchronous turns', () => {
  it('keep per-sender order and never overlap across slices (more turns than one slice)', async () => {
    const log: Event[] = [];
    const def = workerType(log, async () => undefined);
    const system = new ActorSystem();
    system.registry.add(def);
    const a = system.ref(def, 'actor-0');
    const b = system.ref(def, 'actor-1');
    // 3 senders, 2 actors, 1500 tells: several 256-turn slices, interleaved with each other.
    for (let seq = 0; seq < 500; seq++) {
      a.tell.step(0, seq, 0, 0, false);
      b.tell.step(1, seq, 0, 0, false);
      (seq % 2 === 0 ? a : b).tell.step(2, seq, 0, 0, false);
    }
    const [finalA, finalB] = await Promise.all([a.read(), b.read()]);
    const p: Plan = {
      actors: 2,
      senders: [
        Array.from({ length: 500 }, () => ({ actor: 0, hops: 0, sleepMs: 0, fails: false, ask: false, pause: 0 })),
        Array.from({ length: 500 }, () => ({ actor: 1, hops: 0, sleepMs: 0, fails: false, ask: false, pause: 0 })),
        Array.from({ length: 500 }, (_, seq) => ({ actor: seq % 2 === 0 ? 0 : 1, hops: 0, sleepMs: 0, fails: false, ask: false, pause: 0 })),
      ],
    };
    checkRun(p, log, { asks: [], finals: [finalA!, finalB!] });
    expect(finalA!.count + finalB!.count).toBe(1500);
    system.stop();
  });
});
