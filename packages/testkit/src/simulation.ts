/**
 * A simulated wadi cluster: node processes running the real protocol code, a simulated network, a
 * virtual clock and one seeded random generator. A run is determined by its options (the seed)
 * and its schedule of steps, so a failure replays exactly.
 *
 * While it runs, the simulation checks the safety properties as things happen (see
 * `SafetyMonitor`), and `settle` checks liveness and the state the cluster converges to once the
 * faults stop (see `checkConverged`).
 */
import { bucketOf } from '@wadi/core';
import type { ClusterMessage, DirectoryEntry, Layout } from '@wadi/cluster';
import { EventQueue } from './event-queue.js';
import { convergence, SafetyMonitor, type Violation } from './invariants.js';
import { NO_FAULTS, SimNetwork, type LinkFaults } from './network.js';
import { SeededRandom } from './random.js';
import { describeStep, type SimulationOptions, type Step } from './schedule.js';
import { SESSION_TYPE, SimNode, nodeUrl, type SimNodeObserver } from './sim-node.js';
import { Trace } from './trace.js';

/** Where the simulation knows a session to be: the truth the directories are checked against. */
export interface SessionPlace {
  node: string;
  incarnation: number;
  worker: number;
  version: number;
}

export class Simulation {
  readonly options: Required<Omit<SimulationOptions, 'seeds' | 'faults' | 'handoffTimeoutMs' | 'maxHandoffs'>> & SimulationOptions;
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
  readonly #queue = new EventQueue();
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

  constructor(options: SimulationOptions) {
    this.options = { buckets: 64, workers: 2, timings: {}, tickMs: 100, ...options };
    this.random = new SeededRandom(options.seed);
    this.#faults = { ...NO_FAULTS, ...options.faults };
    this.network = new SimNetwork(this.#queue, this.random.fork(), () => this.#now, this.#faults);
    this.monitor = new SafetyMonitor(this.options.buckets, (at, kind, detail) => this.trace.add(at, '', kind, detail));
    this.#seeds = options.seeds ?? [];
    this.#every(100, () => {
      this.network.ping();
      this.network.maintain();
    });
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
  apply(step: Step): void {
    const skipped = this.#apply(step);
    this.trace.add(this.#now, '', skipped === undefined ? 'step' : 'skip', skipped === undefined ? describeStep(step) : `${describeStep(step)}: ${skipped}`);
  }

  #apply(step: Step): string | undefined {
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
        for (let i = 0; i < step.count; i++) this.createSession(node);
        return undefined;
      }
      case 'move': {
        const id = this.#pickSession(step.pick);
        const target = this.nodes.get(step.to);
        if (id === undefined) return 'no sessions';
        const place = this.sessions.get(id)!;
        const source = this.nodes.get(place.node)!;
        if (target === undefined || !target.running || target.paused || target.leaving || target.id === source.id) return 'no such target';
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
      case 'run':
        this.run(step.ms);
        return undefined;
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

  #leave(id: string): string | undefined {
    const node = this.nodes.get(id);
    if (node === undefined || !node.running || node.paused || node.leaving) return 'not a running, active node';
    if (node.protocol.member.phase !== 'member') return `in phase ${node.protocol.member.phase}`;
    const targets = this.running().filter((other) => other !== node && !other.paused && !other.leaving && other.protocol.member.phase === 'member');
    const mine = [...this.sessions].filter(([, place]) => place.node === id).map(([session]) => session);
    if (targets.length === 0 && mine.length > 0) return 'nowhere to evacuate its sessions to';
    mine.forEach((session, index) => this.moveSession(session, targets[index % targets.length]!));
    node.leave();
    return undefined;
  }

  #pickSession(pick: number): string | undefined {
    if (this.sessions.size === 0) return undefined;
    const ids = [...this.sessions.keys()];
    return ids[Math.abs(pick) % ids.length];
  }

  #stop(node: SimNode, why: string): void {
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
  run(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const at = this.#queue.peekTime();
      if (at === undefined || at > end) break;
      const event = this.#queue.pop()!;
      this.#now = event.at;
      this.events++;
      event.run();
    }
    this.#now = end;
  }

  /** Runs until `done` holds (checked every `stepMs`), for at most `limitMs`; the time it took, or undefined. */
  runUntil(done: () => boolean, limitMs: number, stepMs = 100): number | undefined {
    const start = this.#now;
    while (!done()) {
      if (this.#now - start >= limitMs) return undefined;
      this.run(stepMs);
    }
    return this.#now - start;
  }

  /**
   * The faults stop: cuts heal, paused nodes resume, crashed and removed nodes restart (as a
   * supervisor would restart them), the network stops losing messages. Then the cluster must
   * converge within `limitMs`; what did not is recorded as a liveness violation.
   */
  settle(limitMs = 120_000): number | undefined {
    this.trace.add(this.#now, '', 'settle', 'faults stop');
    this.#supervising = true;
    this.network.heal();
    this.network.faults = { ...NO_FAULTS, latencyMs: this.#faults.latencyMs, jitterMs: this.#faults.jitterMs };
    for (const node of this.running()) if (node.paused) node.resume();
    for (const id of [...this.nodes.keys()].sort()) {
      const node = this.nodes.get(id)!;
      if (!node.running && !this.left.has(id)) this.start(id);
    }
    const took = this.runUntil(() => convergence(this).length === 0, limitMs);
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
      exited: (node, why, reason) => {
        this.trace.add(this.#now, node.id, why, reason);
        if (why === 'left') {
          // Only a leave the cluster completed (a chosen layout without the node) is final; one
          // given up (from a minority, or timed out) is an abandonment the supervisor undoes.
          const latest = this.monitor.latestChosen();
          if (latest === undefined || !latest.members.some((member) => member.id === node.id)) this.left.add(node.id);
          // The process exits a moment later, once its last gossip is out.
          this.#at(this.#now + 200, () => node.running && this.#stop(node, 'exited after leaving'));
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
