/**
 * A simulated wadi cluster: node processes running the real protocol and session code, a
 * simulated network, a virtual clock and one seeded random generator. A run is determined by its
 * options (the seed) and its schedule of steps, so a failure replays exactly.
 *
 * The nodes' actor systems run their turns on microtasks, as in a real process: after every event
 * that ran session code, the run loop lets every microtask run (a `process.nextTick` queued from a
 * microtask runs only once the microtask queue is empty) before the next event, so the order of
 * everything stays a function of the seed and the schedule. That makes `run`, `apply` and
 * `settle` asynchronous.
 *
 * While it runs, the simulation checks the safety properties as things happen (see
 * `SafetyMonitor`, and the `CallLedger` for the real sessions' messages), and `settle` checks
 * liveness and the state the cluster converges to once the faults stop (see `convergence`);
 * `checkSessions` then checks what the sessions applied.
 */
import { bucketOf, type RoutingPolicy } from '@wadi/core';
import { MAIN_THREAD, type ClusterMessage, type DirectoryEntry, type Layout } from '@wadi/cluster';
import { EventQueue } from './event-queue.js';
import { convergence, SafetyMonitor, type Violation } from './invariants.js';
import { NO_FAULTS, SimNetwork, type LinkFaults } from './network.js';
import { SeededRandom } from './random.js';
import { describeStep, type SimulationOptions, type Step } from './schedule.js';
import { CallLedger, sessionName, type LedgerSender, type SentMessage } from './sessions.js';
import { SESSION_TYPE, SimNode, nodeUrl, type SimNodeObserver } from './sim-node.js';
import { Trace } from './trace.js';

/** How often the simulation notes which nodes are cut off from a majority (the `minority stops` check). */
const CUT_OFF_CHECK_MS = 10;
/** After its leave, a node exits once no session frame reached it for this long... */
const LEFT_QUIET_MS = 300;
/** ...or this long after the leave completed, at most (both as cluster-node.ts). */
const LEFT_GRACE_MAX_MS = 3000;

/** Lets every queued microtask run, and the ones they queue: a tick queued from a microtask runs after them all. */
async function drainMicrotasks(): Promise<void> {
  await undefined;
  await new Promise<void>((resolve) => process.nextTick(resolve));
}

/** Where the simulation knows a session to be: the truth the directories are checked against. */
export interface SessionPlace {
  node: string;
  incarnation: number;
  worker: number;
  version: number;
}

export class Simulation {
  readonly options: Required<Omit<SimulationOptions, 'seeds' | 'faults' | 'handoffTimeoutMs' | 'maxHandoffs' | 'replicas' | 'askTimeoutMs' | 'localShortcut' | 'traceFrames'>> & SimulationOptions;
  readonly trace = new Trace();
  readonly random: SeededRandom;
  readonly network: SimNetwork;
  readonly monitor: SafetyMonitor;
  /** The running (or last) process of each node id. */
  readonly nodes = new Map<string, SimNode>();
  /** Session id -> where it is. */
  readonly sessions = new Map<string, SessionPlace>();
  /** Nodes that left gracefully (and have not been started since). */
  readonly left = new Set<string>();
  /** What was sent to the real sessions, answered, and applied. */
  readonly ledger = new CallLedger();
  readonly #queue = new EventQueue();
  /** Which messages are asks: its own generator, so that calls shift no other random choice. */
  readonly #callRandom: SeededRandom;
  /** An event ran session code: its microtasks run before the next event. */
  #dirty = false;
  /** When the last message a `call` step scheduled is due (it may wait longer on a paused node). */
  callsUntil = 0;
  /** A process stopped while hosting real sessions (a crash, a removal, a leave given up or cut short): their messages may be lost. */
  sessionsLost = false;
  readonly #incarnations = new Map<string, number>();
  readonly #disks = new Map<string, SimNode['disk']>();
  #now = 0;
  #nextSession = 0;
  /** Once the faults stop, a node that exits (other than by a completed leave) is restarted, as a supervisor would. */
  #supervising = false;
  #seeds: string[];
  #faults: LinkFaults;
  /** Simulated ms processed, for the speed benchmark. */
  events = 0;
  /**
   * Per running node, since when it has been unable to exchange messages with a majority of the
   * members of the layout it committed (the ground truth of the network, not what the node thinks).
   */
  readonly #cutOffSince = new Map<SimNode, number>();

  constructor(options: SimulationOptions) {
    this.options = { buckets: 64, workers: 2, timings: {}, tickMs: 100, ...options };
    this.random = new SeededRandom(options.seed);
    this.#callRandom = new SeededRandom((options.seed ^ 0x2545f491) >>> 0);
    this.#faults = { ...NO_FAULTS, ...options.faults };
    this.network = new SimNetwork(this.#queue, this.random.fork(), () => this.#now, this.#faults);
    this.monitor = new SafetyMonitor(this.options.buckets, (at, kind, detail) => this.trace.add(at, '', kind, detail));
    this.#seeds = options.seeds ?? [];
    this.#every(100, () => {
      this.network.ping();
      this.network.maintain();
    });
    this.#every(CUT_OFF_CHECK_MS, () => this.#watchCutOff());
  }

  /** Notes which nodes are cut off from a majority of their layout's members (see `#cutOffSince`). */
  #watchCutOff(): void {
    for (const node of this.nodes.values()) {
      const layout = node.protocol.layout;
      if (!node.running || node.paused || layout === null) {
        this.#cutOffSince.delete(node);
        continue;
      }
      const reached = layout.members.filter((member) => member.id === node.id || (this.network.reachable(node.id, member.id) && this.nodes.get(member.id)?.paused !== true)).length;
      if (reached * 2 > layout.members.length) this.#cutOffSince.delete(node);
      else if (!this.#cutOffSince.has(node)) this.#cutOffSince.set(node, this.#now);
    }
  }

  /**
   * A session turn committed on `node`: wrong if the node has been cut off from a majority of its
   * layout for its quorum grace or longer (it should have stopped by then: the majority may have
   * declared it down and placed its sessions anew).
   */
  #checkMajority(node: SimNode, session: string): void {
    const since = this.#cutOffSince.get(node);
    const grace = node.protocol.member.timings.quorumGraceMs;
    if (since !== undefined && this.#now - since >= grace) {
      this.monitor.violation(this.#now, 'minority stops', `${node.id} committed a turn of ${session} ${this.#now - since} ms after it was cut off from a majority of its layout (grace ${grace} ms)`);
    }
  }

  get now(): number {
    return this.#now;
  }

  get violations(): readonly Violation[] {
    return this.monitor.violations;
  }

  /** Nodes whose process is running. */
  running(): SimNode[] {
    return [...this.nodes.values()].filter((node) => node.running).sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  node(id: string): SimNode | undefined {
    return this.nodes.get(id);
  }

  // steps

  /** Applies one step; a step that does not apply in the current state is skipped (and traced). */
  async apply(step: Step): Promise<void> {
    let skipped: string | undefined;
    if (step.op === 'run') await this.run(step.ms);
    else skipped = this.#apply(step);
    // Reachability changes only with steps (and resumes): note it at once, not at the next poll.
    this.#watchCutOff();
    this.trace.add(this.#now, '', skipped === undefined ? 'step' : 'skip', skipped === undefined ? describeStep(step) : `${describeStep(step)}: ${skipped}`);
    if (this.#dirty) await this.#drain();
  }

  #apply(step: Exclude<Step, { op: 'run' }>): string | undefined {
    switch (step.op) {
      case 'start': {
        if (this.nodes.get(step.node)?.running) return 'already running';
        this.start(step.node);
        return undefined;
      }
      case 'crash': {
        const node = this.nodes.get(step.node);
        if (node === undefined || !node.running) return 'not running';
        this.#stop(node, 'crashed');
        return undefined;
      }
      case 'pause': {
        const node = this.nodes.get(step.node);
        if (node === undefined || !node.running || node.paused) return 'not running, or already paused';
        node.pause();
        this.trace.add(this.#now, node.id, 'paused', `for ${step.ms} ms`);
        this.#at(this.#now + step.ms, () => {
          if (node.running && node.paused) {
            this.trace.add(this.#now, node.id, 'resumed', '');
            node.resume();
            this.#watchCutOff();
          }
        });
        return undefined;
      }
      case 'leave':
        return this.#leave(step.node);
      case 'partition': {
        const side = new Set(step.side);
        const rest = [...this.nodes.keys()].filter((id) => !side.has(id));
        if (side.size === 0 || rest.length === 0) return 'one side is empty';
        this.network.partition([[...side], rest]);
        return undefined;
      }
      case 'cut':
        for (const from of step.from) for (const to of step.to) if (from !== to) this.network.cut(from, to);
        return undefined;
      case 'heal':
        this.network.heal();
        return undefined;
      case 'create': {
        const node = this.nodes.get(step.node);
        if (node === undefined || !node.running || node.paused || node.leaving) return 'not a running, active node';
        if (!isMember(node)) return 'not a member of its layout yet';
        for (let i = 0; i < step.count; i++) this.createSession(node);
        return undefined;
      }
      case 'move': {
        const id = this.#pickSession(step.pick);
        const target = this.nodes.get(step.to);
        if (id === undefined) return 'no sessions';
        const place = this.sessions.get(id)!;
        const source = this.nodes.get(place.node)!;
        if (target === undefined || !target.running || target.paused || target.leaving || target.id === source.id || !isMember(target)) return 'no such target';
        if (source.paused) return 'the session is on a paused node';
        this.moveSession(id, target);
        return undefined;
      }
      case 'destroy': {
        const id = this.#pickSession(step.pick);
        if (id === undefined) return 'no sessions';
        const source = this.nodes.get(this.sessions.get(id)!.node)!;
        if (source.paused) return 'the session is on a paused node';
        source.deactivate(id);
        this.sessions.delete(id);
        return undefined;
      }
      case 'call':
        return this.#call(step.node, step.thread, step.session, step.count, step.everyMs ?? 0, undefined);
      case 'migrate':
        return this.#call(step.node, step.thread, step.session, 1, 0, 'migrate');
    }
  }

  /** Starts (or restarts, as a new incarnation with its disk) node `id`. */
  start(id: string): SimNode {
    const incarnation = (this.#incarnations.get(id) ?? 0) + 1;
    this.#incarnations.set(id, incarnation);
    if (this.options.seeds === undefined && this.#seeds.length < 3 && !this.#seeds.includes(id)) this.#seeds.push(id);
    const node = new SimNode(
      {
        id,
        incarnation,
        buckets: this.options.buckets,
        workers: this.options.workers,
        // The configured seeds first (the first forms the cluster), then every running node, as
        // a discovery service would list them: a cluster whose seed nodes all left stays findable.
        seeds: [...new Set([...this.#seeds, ...this.running().map((other) => other.id)])].filter((other) => other !== id || this.#seeds[0] === id).map(nodeUrl),
        timings: this.options.timings,
        disk: this.#disks.get(id) ?? { committed: null, accepted: null },
        ...(this.options.handoffTimeoutMs === undefined ? {} : { handoffTimeoutMs: this.options.handoffTimeoutMs }),
        ...(this.options.maxHandoffs === undefined ? {} : { maxHandoffs: this.options.maxHandoffs }),
        ...(this.options.replicas === undefined ? {} : { replicas: this.options.replicas }),
        ...(this.options.askTimeoutMs === undefined ? {} : { askTimeoutMs: this.options.askTimeoutMs }),
        localShortcut: this.options.localShortcut ?? true,
        traceFrames: this.options.traceFrames === true,
      },
      this.network,
      this.#queue,
      this.#observer(),
    );
    this.nodes.set(id, node);
    this.left.delete(id);
    this.network.attach(node);
    this.trace.add(this.#now, id, 'started', `incarnation ${incarnation}${incarnation > 1 ? ', with its disk' : ''}`);
    node.start();
    // Nodes tick out of step with each other, as their processes would.
    const phase = this.random.int(this.options.tickMs);
    this.#every(this.options.tickMs, () => (node.running ? (node.tick(), true) : false), phase);
    this.#watchCutOff();
    return node;
  }

  createSession(node: SimNode): string {
    const id = `s${this.#nextSession++}`;
    const worker = this.random.int(this.options.workers);
    node.activate(id, worker, 0);
    this.sessions.set(id, { node: node.id, incarnation: node.incarnation, worker, version: 0 });
    return id;
  }

  /** Moves a session as a migration would: gone from its source, then active at the target. */
  moveSession(id: string, target: SimNode): void {
    const place = this.sessions.get(id)!;
    this.nodes.get(place.node)!.deactivate(id);
    const worker = this.random.int(this.options.workers);
    target.activate(id, worker, place.version + 1);
    this.sessions.set(id, { node: target.id, incarnation: target.incarnation, worker, version: place.version + 1 });
  }

  /**
   * A graceful leave. The abstract sessions move to the other active members at once (the model's
   * evacuation, as before real sessions existed); the real ones move once the node owns no bucket
   * any more (its `NodeDirectories.evacuate`: every worker's `SessionMigrations.evacuate`).
   */
  #leave(id: string): string | undefined {
    const node = this.nodes.get(id);
    if (node === undefined || !node.running || node.paused || node.leaving) return 'not a running, active node';
    if (node.protocol.member.phase !== 'member') return `in phase ${node.protocol.member.phase}`;
    const targets = this.running().filter((other) => other !== node && !other.paused && !other.leaving && other.protocol.member.phase === 'member');
    const mine = [...this.sessions].filter(([, place]) => place.node === id).map(([session]) => session);
    if (targets.length === 0 && (mine.length > 0 || node.realSessions().length > 0)) return 'nowhere to evacuate its sessions to';
    mine.forEach((session, index) => this.moveSession(session, targets[index % targets.length]!));
    node.leave();
    return undefined;
  }

  /** `count` messages from thread `thread` of `nodeId` to session `pick`, one every `everyMs` (all at once for 0). */
  #call(nodeId: string, thread: number, pick: number, count: number, everyMs: number, routing: RoutingPolicy | undefined): string | undefined {
    const node = this.nodes.get(nodeId);
    if (node === undefined || !node.running || node.paused) return 'not a running node';
    const index = thread >= 0 ? thread % this.options.workers : MAIN_THREAD;
    const session = sessionName(pick);
    for (let i = 0; i < count; i++) {
      if (i === 0 || everyMs <= 0) this.send(node, index, session, { routing });
      else this.#at(this.#now + i * everyMs, () => node.whenAwake(() => this.send(node, index, session, { routing })));
    }
    this.callsUntil = Math.max(this.callsUntil, this.#now + (count - 1) * Math.max(0, everyMs));
    return undefined;
  }

  /**
   * One message from thread `thread` (a worker index, or MAIN_THREAD) of `node` to real session
   * `session`, through that thread's actor system: an ask if `options.ask` says so (or for the
   * `migrate` policy), else an ask or a tell at random.
   */
  send(node: SimNode, thread: number, session: string, options: { routing?: RoutingPolicy | undefined; ask?: boolean } = {}): SentMessage {
    this.#dirty = true;
    const routing = options.routing;
    const { system, log } = node.caller(thread);
    const sender: LedgerSender = { key: `${node.id}#${node.incarnation}/${thread === MAIN_THREAD ? 'main' : thread}`, node: node.id, incarnation: node.incarnation };
    const ask = options.ask ?? (routing === 'migrate' || this.#callRandom.chance(0.5));
    const layout = node.protocol.layout;
    const member = layout !== null && layout.members.some((other) => other.id === node.id && other.incarnation === node.incarnation);
    const message = this.ledger.send(sender, session, ask, routing ?? '', this.#now, member);
    this.trace.add(this.#now, node.id, 'call', `${sender.key} -> ${session} #${message.n} ${ask ? 'ask' : 'tell'}${routing === undefined ? '' : ` (${routing})`}`);
    const args = [sender.key, message.n];
    if (ask) {
      system.ask(log, session, 'append', args, this.options.askTimeoutMs ?? 30_000, undefined, routing).then(
        (value) => this.#answered(node, message, true, value),
        (error: unknown) => this.#answered(node, message, false, error),
      );
      return message;
    }
    try {
      system.tell(log, session, 'append', args, routing);
    } catch (error) {
      this.ledger.refused(message, error);
      this.trace.add(this.#now, node.id, 'call', `${sender.key} -> ${session} #${message.n} refused: ${(error as Error).message}`);
    }
    return message;
  }

  #answered(node: SimNode, message: SentMessage, ok: boolean, value: unknown): void {
    this.ledger.settled(message, ok, value);
    if (!ok) this.trace.add(this.#now, node.id, 'call', `${message.sender} -> ${message.session} #${message.n} failed: ${(value as Error).name}: ${(value as Error).message}`);
  }

  #pickSession(pick: number): string | undefined {
    if (this.sessions.size === 0) return undefined;
    const ids = [...this.sessions.keys()];
    return ids[Math.abs(pick) % ids.length];
  }

  #stop(node: SimNode, why: string): void {
    // Its actor systems fail the asks they were waiting on (promise callbacks: microtasks).
    this.#dirty = true;
    const hosted = node.realSessions();
    if (hosted.length > 0) {
      const ids = hosted.map(({ id }) => id).join(', ');
      if (why === 'exited after leaving' && node.protocol.evacuation === 'done') {
        this.monitor.violation(this.#now, 'leave evacuates', `${node.id} exited after its sessions were evacuated, still hosting ${ids}`);
      } else {
        // A crash, a removal, a leave given up or cut short (declared down while leaving): what
        // its sessions applied dies with it.
        this.sessionsLost = true;
        this.trace.add(this.#now, node.id, 'lost', `sessions ${ids} die with the process`);
      }
    }
    node.stop();
    this.#disks.set(node.id, structuredClone(node.disk));
    for (const [session, place] of this.sessions) {
      if (place.node === node.id) this.sessions.delete(session);
    }
    this.trace.add(this.#now, node.id, 'stopped', why);
    if (this.#supervising && !this.left.has(node.id)) this.#at(this.#now + 1000, () => this.nodes.get(node.id) === node && this.start(node.id));
  }

  // time

  /** Runs the simulation for `ms` of simulated time. */
  async run(ms: number): Promise<void> {
    const end = this.#now + ms;
    if (this.#dirty) await this.#drain();
    for (;;) {
      const at = this.#queue.peekTime();
      if (at === undefined || at > end) break;
      const event = this.#queue.pop()!;
      this.#now = event.at;
      this.events++;
      event.run();
      if (this.#dirty) await this.#drain();
    }
    this.#now = end;
  }

  /** Runs until `done` holds (checked every `stepMs`), for at most `limitMs`; the time it took, or undefined. */
  async runUntil(done: () => boolean, limitMs: number, stepMs = 100): Promise<number | undefined> {
    const start = this.#now;
    while (!done()) {
      if (this.#now - start >= limitMs) return undefined;
      await this.run(stepMs);
    }
    return this.#now - start;
  }

  /** Lets every microtask run now (after calling into an actor system from outside an event). */
  async flush(): Promise<void> {
    await this.#drain();
  }

  /** Lets the microtasks that session code queued run (actor turns, reply callbacks), and theirs. */
  async #drain(): Promise<void> {
    this.#dirty = false;
    await drainMicrotasks();
    this.#dirty = false;
  }

  /**
   * The faults stop: cuts heal, paused nodes resume, crashed and removed nodes restart (as a
   * supervisor would restart them), the network stops losing messages. Then the cluster must
   * converge within `limitMs`; what did not is recorded as a liveness violation.
   */
  async settle(limitMs = 120_000): Promise<number | undefined> {
    this.trace.add(this.#now, '', 'settle', 'faults stop');
    this.#supervising = true;
    this.network.heal();
    this.network.faults = { ...NO_FAULTS, latencyMs: this.#faults.latencyMs, jitterMs: this.#faults.jitterMs };
    for (const node of this.running()) if (node.paused) node.resume();
    for (const id of [...this.nodes.keys()].sort()) {
      const node = this.nodes.get(id)!;
      if (!node.running && !this.left.has(id)) this.start(id);
    }
    this.#watchCutOff();
    const took = await this.runUntil(() => convergence(this).length === 0, limitMs);
    if (took === undefined) {
      this.monitor.violation(this.#now, 'liveness', `not converged ${limitMs / 1000} s after the faults stopped: ${convergence(this).slice(0, 5).join('; ')}`);
    } else {
      this.trace.add(this.#now, '', 'converged', `after ${took} ms`);
    }
    return took;
  }

  #at(at: number, run: () => void): void {
    this.#queue.push(at, run);
  }

  /** Runs `task` every `periodMs` (first after `offset`) while it does not return false. */
  #every(periodMs: number, task: () => boolean | void, offset = periodMs): void {
    const fire = (): void => {
      if (task() === false) return;
      this.#at(this.#now + periodMs, fire);
    };
    this.#at(this.#now + offset, fire);
  }

  #observer(): SimNodeObserver {
    return {
      now: () => this.#now,
      trace: (node, kind, detail) => this.trace.add(this.#now, node, kind, detail),
      committed: (node, layout: Layout, previous: Layout | null) => {
        this.trace.add(this.#now, node.id, 'committed', describeLayout(layout, previous));
        this.monitor.committed(this.#now, node.id, node.incarnation, layout);
      },
      installed: (node, bucket: number, epoch: number, entries: DirectoryEntry[]) => {
        this.monitor.installed(this.#now, node.id, node.incarnation, bucket, epoch, entries.length);
      },
      sent: (node, to: string, message: ClusterMessage) => this.monitor.sent(this.#now, node.id, node.protocol.layout?.epoch ?? 0, to, message),
      persisted: (_node, state) => {
        if (state.accepted !== null) this.monitor.accepted(state.accepted);
      },
      applied: (node, worker, session, sender, n, position, lineage) => {
        this.trace.add(this.#now, node.id, 'applied', `${worker}: ${session} <- ${sender} #${n} (${position} in its log, activation ${lineage})`);
        const problem = this.ledger.applied(session, sender, n);
        if (problem !== undefined) this.monitor.violation(this.#now, problem.property, `${problem.detail} (on ${node.id}/${worker})`);
        const second = this.ledger.committedBy(session, lineage);
        if (second !== undefined) this.monitor.violation(this.#now, second.property, `${second.detail} (on ${node.id}/${worker})`);
        this.#checkMajority(node, session);
      },
      touch: () => void (this.#dirty = true),
      exited: (node, why, reason) => {
        this.trace.add(this.#now, node.id, why, reason);
        if (why === 'left') {
          // Only a leave the cluster completed (a chosen layout without the node) is final; one
          // given up (from a minority, or timed out) is an abandonment the supervisor undoes.
          const latest = this.monitor.latestChosen();
          if (latest === undefined || !latest.members.some((member) => member.id === node.id)) this.left.add(node.id);
          // The process exits once no call has reached it for a moment (calls still on their way
          // are forwarded to where the sessions went), at most a few seconds later, as cluster-node.ts does.
          const deadline = this.#now + LEFT_GRACE_MAX_MS;
          const exitWhenQuiet = (): void => {
            if (!node.running) return;
            if (this.#now >= deadline || this.#now - node.lastFrameAt >= LEFT_QUIET_MS) this.#stop(node, 'exited after leaving');
            else this.#at(this.#now + 50, exitWhenQuiet);
          };
          this.#at(this.#now + LEFT_QUIET_MS, exitWhenQuiet);
        } else {
          this.#stop(node, 'exited: removed from the cluster');
        }
      },
    };
  }
}

export function sessionBucket(id: string, buckets: number): number {
  return bucketOf(id, buckets);
}

export { SESSION_TYPE };

function describeLayout(layout: Layout, previous: Layout | null): string {
  const counts = new Map<string, number>();
  for (const owner of layout.owners) {
    const id = layout.members[owner]!.id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  let moves = 0;
  if (previous !== null) {
    for (let bucket = 0; bucket < layout.owners.length; bucket++) {
      const before = previous.members[previous.owners[bucket]!]!;
      const after = layout.members[layout.owners[bucket]!]!;
      if (before.id !== after.id || before.incarnation !== after.incarnation) moves++;
    }
  }
  const owners = [...counts].map(([id, count]) => `${id}:${count}`).join(' ');
  return `epoch ${layout.epoch} by ${layout.coordinator} [${owners}]${previous === null ? '' : ` from epoch ${previous.epoch}, ${moves} moves`}`;
}

/**
 * Whether `node` is a member of the layout it committed. wadi places and moves sessions only onto
 * members (a joiner's calls go to the owners, a grant or migration to a non-member is refused),
 * and a rebuilt directory is asked of the members alone: a session the simulation put on a node
 * not admitted yet could be lost from its directory in a way no real node can produce.
 */
function isMember(node: SimNode): boolean {
  return node.protocol.layout?.members.some((member) => member.id === node.id) ?? false;
}
