/**
 * Moving sessions between nodes while calls keep arriving, one worker's side of it (source and
 * target). Sessions move in batches: one group for a `migrate` call, many groups when a node is
 * evacuated. For each batch:
 *
 *   source: freeze the sessions (the running turn ends; new calls wait in their mailboxes)
 *   source -> target  offer     (each session's state, and its next location version)
 *   target: install them frozen, register them with their bucket owners (new calls that the owners
 *           now send here wait too)
 *   target -> source  accepted  (or refused, per session)
 *   source -> owners  fence     (each bucket owner on a third node: do you route them to the target yet?)
 *   owners -> source  fenced    (yes: and every call it sent the source before came before this answer)
 *   source: take them out, leave forwarding pointers, send what waited for them
 *   source -> target  handover  (the waiting calls, in order)
 *   target: run the handed-over calls first, then what waited at the target; thaw
 *   target -> source  done
 *
 * No call is lost or run twice, and each caller's order holds: everything that reached the
 * source runs before anything that reached the target. The fence is what makes that true of calls
 * a bucket owner forwards: until the owner heard of the new location it sent a caller's calls to
 * the source, and after, straight to the target; its answer comes after the former on the same
 * way, so they are all handed over (rather than forwarded after the thaw, behind later calls).
 * An owner that does not answer in time is not waited for. A batch the target does not accept in time
 * is aborted: the source thaws its sessions (re-registering them above the target's version) and
 * tells the target, which drops its frozen copies and sends back what waited there. Handovers and
 * aborts are repeated until acknowledged, and the target answers repeats idempotently, so a
 * connection that breaks midway loses nothing. A session stays where it was unless the target
 * holds it.
 */
import { activationKey, bucketOf, type ActorSystem } from '@wadi/core';
import { Frame, type CallFrame, type MigratingSession, type MigrationMessage } from './routing.js';
import type { SessionHost, SessionHostIO } from './session-host.js';
import type { SessionRouter } from './session-router.js';

export interface MigrationOptions {
  /** Sessions per batch when evacuating (default 256). */
  batchSize?: number;
  /** Batches in flight from one worker at once: what keeps an evacuation from flooding the others (default 4). */
  maxInFlight?: number;
  /** An offer not accepted within this is aborted; handovers and aborts are repeated at half of it (default 5000 ms). */
  timeoutMs?: number;
  /** The first batch number of this worker: distinct per worker incarnation. */
  firstBatch?: number;
  /** Encoded state per offer at most (default 4 MiB, well within a 16 MiB frame); a larger session cannot move. */
  maxOfferBytes?: number;
}

interface Moving {
  type: string;
  id: string;
  /** The location version at the target. */
  version: number;
}

interface OutgoingBatch {
  batch: number;
  target: string;
  thread: number;
  sessions: Map<string, Moving>;
  phase: 'freezing' | 'offered' | 'fencing' | 'handing-over' | 'aborting';
  unpaused: number;
  sentAt: number;
  /** While fencing: the keys the target accepted, the sessions each owner (`node` NUL `thread`) has not fenced yet, and since when. */
  accepted: readonly string[];
  fences: Map<string, [key: string, version: number][]>;
  fencingSince: number;
  /** What is repeated until acknowledged. */
  message: MigrationMessage | undefined;
}

interface IncomingBatch {
  from: string;
  thread: number;
  batch: number;
  sessions: Map<string, Moving>;
}

const COMPLETED_KEPT_MS = 120_000;
/**
 * A fence is asked again this often: an owner answers only once the target's registration reached
 * it, which is usually a moment after the source asked, and meanwhile the sessions are frozen.
 */
const FENCE_REPEAT_MS = 200;

export class SessionMigrations {
  readonly #host: SessionHost;
  readonly #system: ActorSystem;
  readonly #router: SessionRouter;
  readonly #io: SessionHostIO;
  readonly #batchSize: number;
  readonly #maxInFlight: number;
  readonly #timeoutMs: number;
  readonly #maxOfferBytes: number;
  #nextBatch: number;
  /** Sessions that can never move (their state does not encode, or is too large): an evacuation leaves them. */
  readonly #stuck = new Set<string>();
  readonly #outgoing = new Map<number, OutgoingBatch>();
  /** Session key -> the outgoing batch that moves it. */
  readonly #moving = new Map<string, OutgoingBatch>();
  readonly #incoming = new Map<string, IncomingBatch>();
  /**
   * The keys of the incoming batches: accepted, not handed over yet. They move on from here only
   * once they arrived (their source may still hand over calls for them, or take them back).
   */
  readonly #arriving = new Set<string>();
  /** Incoming batches finished here, so that a repeated handover or abort is only acknowledged. */
  readonly #completed = new Map<string, number>();
  #evacuateTo: ((bucket: number) => string | undefined) | undefined;
  #evacuated: (() => void) | undefined;
  /** Where the evacuation is in this worker's groups, and what it gathered per target worker. */
  #cursor: IterableIterator<[string, Set<string>]> | undefined;
  readonly #gathered = new Map<string, string[]>();
  /** Sessions with nowhere to go (no other node owns their bucket), in the last full pass and in this one. */
  #unplaced = 0;
  #unplacedSeen = 0;
  #migratedOut = 0;
  #migratedIn = 0;
  #failed = 0;

  constructor(options: MigrationOptions, host: SessionHost, system: ActorSystem, router: SessionRouter, io: SessionHostIO) {
    this.#host = host;
    this.#system = system;
    this.#router = router;
    this.#io = io;
    this.#batchSize = options.batchSize ?? 256;
    this.#maxInFlight = options.maxInFlight ?? 4;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#nextBatch = options.firstBatch ?? 1;
    this.#maxOfferBytes = options.maxOfferBytes ?? 4 * 1024 * 1024;
  }

  isMigrating(key: string): boolean {
    return this.#moving.has(key);
  }

  get evacuating(): boolean {
    return this.#evacuateTo !== undefined;
  }

  counts(): { migratedOut: number; migratedIn: number; migrationsFailed: number } {
    return { migratedOut: this.#migratedOut, migratedIn: this.#migratedIn, migrationsFailed: this.#failed };
  }

  /** Moves the group of session `id` hosted here to node `target` (the `migrate` routing policy). */
  migrateGroup(id: string, target: string): void {
    const keys = this.#host.groupKeys(id).filter((key) => !this.#moving.has(key) && !this.#stuck.has(key) && !this.#arriving.has(key));
    if (keys.length === 0 || target === this.#host.node) return;
    this.#start(target, this.#router.threadFor(target, bucketOf(id, this.#host.buckets)), keys);
  }

  /**
   * Moves every session hosted here away, a bounded number of batches at a time, each group to
   * `targetOf(its bucket)`; `done` runs once none is left.
   */
  evacuate(targetOf: (bucket: number) => string | undefined, done: () => void): void {
    this.#evacuateTo = targetOf;
    this.#evacuated = done;
    this.#cursor = this.#host.groups();
    this.#pump();
  }

  receive(from: string, thread: number, message: MigrationMessage): void {
    switch (message.t) {
      case 'offer':
        return this.#onOffer(from, thread, message.batch, message.sessions);
      case 'handover':
        return this.#onHandover(from, thread, message.batch, message.calls);
      case 'abort':
        return this.#onAbort(from, thread, message.batch);
      case 'accepted':
        return this.#onAccepted(message.batch, message.accepted, message.refused);
      case 'done':
        return this.#onDone(message.batch);
      case 'fence':
        return this.#onFence(from, thread, message.batch, message.sessions);
      case 'fenced':
        return this.#onFenced(from, thread, message.batch, message.keys);
    }
  }

  /** The session is no longer on this thread: what was noted of it goes (a session that could not move, say). */
  forget(key: string): void {
    this.#stuck.delete(key);
  }

  /** A node left, crashed or restarted: moves to it cannot finish, and moves from it will never be handed over. */
  nodeGone(node: string): void {
    for (const batch of [...this.#outgoing.values()]) {
      if (batch.target !== node) continue;
      // Not taken out yet (offered, or accepted and fencing): the sessions are still here. Handed
      // over: they died with that node.
      if (batch.phase === 'freezing' || batch.phase === 'offered' || batch.phase === 'fencing') this.#reclaim(batch);
      this.#finish(batch);
    }
    for (const [name, incoming] of [...this.#incoming]) {
      if (incoming.from !== node) continue;
      // The source is gone, and this frozen copy is the latest state there is: carry on with it.
      for (const session of incoming.sessions.values()) this.#system.thaw(session.type, session.id);
      this.#dropIncoming(name, incoming);
    }
  }

  tick(): void {
    const now = this.#io.now();
    for (const batch of [...this.#outgoing.values()]) {
      if (batch.phase === 'offered' && now - batch.sentAt >= this.#timeoutMs) {
        this.#io.log(`migration of ${batch.sessions.size} session(s) to ${batch.target} not accepted in ${this.#timeoutMs} ms: aborted, they stay here`);
        this.#failed += batch.sessions.size;
        this.#reclaim(batch);
        batch.phase = 'aborting';
        batch.message = { t: 'abort', batch: batch.batch };
        this.#sendTo(batch);
      } else if ((batch.phase === 'handing-over' || batch.phase === 'aborting') && now - batch.sentAt >= this.#timeoutMs / 2) {
        this.#sendTo(batch);
      } else if (batch.phase === 'fencing' && now - batch.fencingSince >= this.#timeoutMs) {
        this.#io.log(`bucket owners did not fence ${batch.sessions.size} session(s) moving to ${batch.target} in ${this.#timeoutMs} ms: handed over without them`);
        this.#handOver(batch);
      } else if (batch.phase === 'fencing' && now - batch.sentAt >= Math.min(FENCE_REPEAT_MS, this.#timeoutMs / 2)) {
        this.#sendFences(batch);
      }
    }
    for (const [name, at] of this.#completed) if (now - at > COMPLETED_KEPT_MS) this.#completed.delete(name);
    this.#pump();
  }

  // source side

  #start(target: string, thread: number, keys: readonly string[]): void {
    if (keys.length === 0) return;
    const batch: OutgoingBatch = {
      batch: this.#nextBatch++,
      target,
      thread,
      sessions: new Map(),
      phase: 'freezing',
      unpaused: keys.length,
      sentAt: this.#io.now(),
      message: undefined,
      accepted: [],
      fences: new Map(),
      fencingSince: 0,
    };
    this.#outgoing.set(batch.batch, batch);
    for (const key of keys) {
      const split = key.indexOf('\u0000');
      const moving = { type: key.slice(0, split), id: key.slice(split + 1), version: this.#host.versionOf(key) + 1 };
      batch.sessions.set(key, moving);
      this.#moving.set(key, batch);
    }
    const paused = (): void => {
      // The batch may have been given up (its target went away) while a turn was still running.
      if (--batch.unpaused === 0 && batch.phase === 'freezing' && this.#outgoing.get(batch.batch) === batch) this.#offer(batch);
    };
    for (const [key, moving] of [...batch.sessions]) {
      if (!this.#system.freeze(moving.type, moving.id, paused)) {
        batch.sessions.delete(key);
        this.#moving.delete(key);
        paused();
      }
    }
  }

  #offer(batch: OutgoingBatch): void {
    const sessions: MigratingSession[] = [];
    let bytes = 0;
    const stay = (key: string, moving: Moving): void => {
      this.#system.thaw(moving.type, moving.id);
      batch.sessions.delete(key);
      this.#moving.delete(key);
    };
    for (const [key, moving] of [...batch.sessions]) {
      let state: Uint8Array;
      try {
        state = this.#system.frozenState(moving.type, moving.id);
      } catch (error) {
        this.#io.log(`${moving.type} '${moving.id}' cannot move (its state does not encode: ${(error as Error).message}); it stays here`);
        this.#stuck.add(key);
        stay(key, moving);
        continue;
      }
      if (state.byteLength > this.#maxOfferBytes) {
        this.#io.log(`${moving.type} '${moving.id}' cannot move: its state (${state.byteLength} bytes) is larger than one message may be; it stays here`);
        this.#stuck.add(key);
        stay(key, moving);
        continue;
      }
      // One offer stays well within a frame; whatever does not fit goes in a later batch.
      if (bytes + state.byteLength > this.#maxOfferBytes) {
        stay(key, moving);
        continue;
      }
      bytes += state.byteLength;
      sessions.push([moving.type, moving.id, moving.version, state]);
    }
    if (sessions.length === 0) return this.#finish(batch);
    batch.phase = 'offered';
    batch.message = { t: 'offer', batch: batch.batch, sessions };
    if (!this.#sendTo(batch)) {
      this.#reclaim(batch);
      this.#finish(batch);
    }
  }

  #onAccepted(number: number, accepted: readonly string[], refused: readonly [string, string][]): void {
    const batch = this.#outgoing.get(number);
    if (batch === undefined || batch.phase !== 'offered') return;
    for (const [key, reason] of refused) {
      const moving = batch.sessions.get(key);
      if (moving === undefined) continue;
      this.#io.log(`${batch.target} refused ${moving.type} '${moving.id}': ${reason}; it stays here`);
      this.#failed++;
      this.#system.thaw(moving.type, moving.id);
      batch.sessions.delete(key);
      this.#moving.delete(key);
    }
    batch.accepted = accepted;
    // Bucket owners on a third node may have sent calls here that are still on their way: fence them.
    for (const key of accepted) {
      const moving = batch.sessions.get(key);
      if (moving === undefined) continue;
      const bucket = bucketOf(moving.id, this.#host.buckets);
      const owner = this.#router.ownerOf(bucket);
      if (owner === undefined || owner === this.#host.node || owner === batch.target) continue;
      const name = `${owner}\u0000${this.#router.threadFor(owner, bucket)}`;
      let list = batch.fences.get(name);
      if (list === undefined) batch.fences.set(name, (list = []));
      list.push([key, moving.version]);
    }
    if (batch.fences.size === 0) return this.#handOver(batch);
    batch.phase = 'fencing';
    batch.fencingSince = this.#io.now();
    this.#sendFences(batch);
  }

  #sendFences(batch: OutgoingBatch): void {
    batch.sentAt = this.#io.now();
    for (const [name, sessions] of batch.fences) {
      const split = name.indexOf('\u0000');
      const [owner, thread] = [name.slice(0, split), Number(name.slice(split + 1))];
      try {
        this.#host.send(owner, thread, [Frame.Migration, thread, this.#host.node, this.#host.thread, { t: 'fence', batch: batch.batch, sessions }]);
      } catch (error) {
        // Asked again at the next repeat, and not waited for past the timeout.
        this.#io.log(`fence request to ${owner} not sent: ${(error as Error).message}`);
      }
    }
  }

  #onFenced(owner: string, thread: number, number: number, keys: readonly string[]): void {
    const batch = this.#outgoing.get(number);
    if (batch === undefined || batch.phase !== 'fencing') return;
    const name = `${owner}\u0000${thread}`;
    const fenced = new Set(keys);
    const left = (batch.fences.get(name) ?? []).filter(([key]) => !fenced.has(key));
    if (left.length > 0) batch.fences.set(name, left);
    else batch.fences.delete(name);
    if (batch.fences.size === 0) this.#handOver(batch);
  }

  /** Takes the accepted sessions out, leaves forwarding pointers, and hands over what waited for them. */
  #handOver(batch: OutgoingBatch): void {
    batch.fences.clear();
    const calls: CallFrame[] = [];
    for (const key of batch.accepted) {
      const moving = batch.sessions.get(key);
      if (moving === undefined) continue;
      for (const message of this.#system.removeFrozen(moving.type, moving.id)) {
        const frame = this.#host.toFrame(moving.type, moving.id, message);
        frame[9]++;
        calls.push(frame);
      }
      this.#host.movedOut(key, moving.id, batch.target, moving.version);
      this.#router.learn(key, batch.target, moving.version);
      this.#moving.delete(key);
    }
    if (batch.sessions.size === 0) return this.#finish(batch);
    this.#migratedOut += batch.sessions.size;
    batch.phase = 'handing-over';
    batch.message = { t: 'handover', batch: batch.batch, calls };
    this.#sendTo(batch);
  }

  #onDone(number: number): void {
    const batch = this.#outgoing.get(number);
    if (batch !== undefined && (batch.phase === 'handing-over' || batch.phase === 'aborting')) this.#finish(batch);
  }

  /** The sessions of a batch that did not move run here again, registered above the version the target may have claimed. */
  #reclaim(batch: OutgoingBatch): void {
    for (const [key, moving] of batch.sessions) {
      this.#moving.delete(key);
      this.#system.thaw(moving.type, moving.id);
      this.#host.register(moving.type, moving.id, moving.version + 1);
    }
  }

  #finish(batch: OutgoingBatch): void {
    this.#outgoing.delete(batch.batch);
    for (const key of batch.sessions.keys()) if (this.#moving.get(key) === batch) this.#moving.delete(key);
    this.#pump();
  }

  /** Sends the batch's current message; false when the target cannot be reached. */
  #sendTo(batch: OutgoingBatch): boolean {
    batch.sentAt = this.#io.now();
    try {
      this.#host.send(batch.target, batch.thread, [Frame.Migration, batch.thread, this.#host.node, this.#host.thread, batch.message!]);
      return true;
    } catch (error) {
      this.#io.log(`migration message to ${batch.target} not sent: ${(error as Error).message}`);
      return false;
    }
  }

  /**
   * Starts evacuation batches while fewer than `maxInFlight` are moving. Groups are taken from a
   * cursor over what this worker hosts (not rescanned per batch: 100k sessions must not cost
   * quadratic time) and gathered per target worker until one has a full batch.
   */
  #pump(): void {
    const targetOf = this.#evacuateTo;
    if (targetOf === undefined) return;
    while (this.#outgoing.size < this.#maxInFlight) {
      const next = this.#gather(targetOf);
      if (next === undefined) break;
      this.#start(next.target, next.thread, next.keys);
    }
    if (this.#outgoing.size > 0 || this.#gathered.size > 0) return;
    const left = this.#host.hostedCount;
    if (left > this.#unplaced) {
      // Some moves were refused or aborted: try those again from the start (at the next tick, so
      // a target that keeps refusing is not hammered).
      if (this.#cursor === undefined) this.#cursor = this.#host.groups();
      return;
    }
    if (left > 0) this.#io.log(`${left} session(s) have nowhere to go and stay here`);
    const done = this.#evacuated;
    this.#evacuated = undefined;
    this.#evacuateTo = undefined;
    this.#cursor = undefined;
    done?.();
  }

  /** The next batch to start: a full one for some target, or (once every group was seen) any gathered one. */
  #gather(targetOf: (bucket: number) => string | undefined): { target: string; thread: number; keys: string[] } | undefined {
    const take = (name: string): { target: string; thread: number; keys: string[] } => {
      const keys = this.#gathered.get(name)!.filter((key) => !this.#moving.has(key));
      this.#gathered.delete(name);
      const split = name.indexOf('\u0000');
      return { target: name.slice(0, split), thread: Number(name.slice(split + 1)), keys };
    };
    while (this.#cursor !== undefined) {
      const step = this.#cursor.next();
      if (step.done === true) {
        this.#cursor = undefined;
        this.#unplaced = this.#unplacedSeen;
        this.#unplacedSeen = 0;
        break;
      }
      const [group, keys] = step.value;
      const bucket = bucketOf(group, this.#host.buckets);
      const target = targetOf(bucket);
      let movable = 0;
      for (const key of keys) if (!this.#stuck.has(key)) movable++;
      this.#unplacedSeen += keys.size - movable;
      if (target === undefined || target === this.#host.node) {
        this.#unplacedSeen += movable;
        continue;
      }
      const name = `${target}\u0000${this.#router.threadFor(target, bucket)}`;
      let list = this.#gathered.get(name);
      if (list === undefined) this.#gathered.set(name, (list = []));
      // A session still arriving is not moved on yet: a later pass takes it (see #pump).
      for (const key of keys) if (!this.#moving.has(key) && !this.#stuck.has(key) && !this.#arriving.has(key)) list.push(key);
      if (list.length >= this.#batchSize) return take(name);
    }
    for (const name of this.#gathered.keys()) return take(name);
    return undefined;
  }

  // a bucket owner's side

  /** A source asks whether this bucket actor routes moving sessions to their new location yet. */
  #onFence(from: string, thread: number, number: number, sessions: readonly [string, number][]): void {
    const keys = sessions.filter(([key, version]) => this.#host.routesPast(key, version)).map(([key]) => key);
    // None yet: the source asks again (its target's registration is still on its way here).
    if (keys.length > 0) this.#reply(from, thread, { t: 'fenced', batch: number, keys });
  }

  // target side

  #onOffer(from: string, thread: number, number: number, sessions: readonly MigratingSession[]): void {
    const name = `${from}\u0000${thread}\u0000${number}`;
    const accepted: string[] = [];
    const refused: [string, string][] = [];
    const taking = this.#host.members.includes(this.#host.node) && !this.evacuating;
    const incoming: IncomingBatch = { from, thread, batch: number, sessions: new Map() };
    for (const [type, id, version, state] of sessions) {
      const key = activationKey(type, id);
      if (!taking) {
        refused.push([key, `${this.#host.node} is not taking sessions (it is leaving or not in the layout)`]);
        continue;
      }
      try {
        this.#system.importFrozen(type, id, state);
      } catch (error) {
        refused.push([key, (error as Error).message]);
        continue;
      }
      this.#host.movedIn(key, id, version, state);
      this.#host.register(type, id, version);
      incoming.sessions.set(key, { type, id, version });
      accepted.push(key);
    }
    if (incoming.sessions.size > 0) this.#incoming.set(name, incoming);
    for (const key of incoming.sessions.keys()) this.#arriving.add(key);
    this.#reply(from, thread, { t: 'accepted', batch: number, accepted, refused });
  }

  #dropIncoming(name: string, incoming: IncomingBatch): void {
    this.#incoming.delete(name);
    for (const key of incoming.sessions.keys()) this.#arriving.delete(key);
  }

  #onHandover(from: string, thread: number, number: number, calls: readonly CallFrame[]): void {
    const name = `${from}\u0000${thread}\u0000${number}`;
    const incoming = this.#incoming.get(name);
    if (incoming !== undefined) {
      const byKey = new Map<string, CallFrame[]>();
      const strays: CallFrame[] = [];
      for (const call of calls) {
        const key = activationKey(call[5], call[6]);
        if (!incoming.sessions.has(key)) strays.push(call);
        else {
          let list = byKey.get(key);
          if (list === undefined) byKey.set(key, (list = []));
          list.push(call);
        }
      }
      for (const [key, session] of incoming.sessions) {
        this.#system.thaw(session.type, session.id, this.#host.toMessages(byKey.get(key) ?? [], key));
      }
      this.#migratedIn += incoming.sessions.size;
      this.#dropIncoming(name, incoming);
      this.#completed.set(name, this.#io.now());
      this.#host.redeliver(strays);
    }
    this.#reply(from, thread, { t: 'done', batch: number });
  }

  #onAbort(from: string, thread: number, number: number): void {
    const name = `${from}\u0000${thread}\u0000${number}`;
    const incoming = this.#incoming.get(name);
    if (incoming !== undefined) {
      this.#dropIncoming(name, incoming);
      this.#completed.set(name, this.#io.now());
      for (const [key, session] of incoming.sessions) {
        const waiting = this.#system.removeFrozen(session.type, session.id).map((message) => this.#host.toFrame(session.type, session.id, message));
        this.#host.moveAborted(key, session.id);
        this.#host.unregister(session.type, session.id, session.version);
        // What reached this node meanwhile goes back to the source, which runs the session again.
        for (const frame of waiting) this.#host.send(from, thread, frame);
      }
    }
    this.#reply(from, thread, { t: 'done', batch: number });
  }

  #reply(to: string, thread: number, message: MigrationMessage): void {
    try {
      this.#host.send(to, thread, [Frame.Migration, thread, this.#host.node, this.#host.thread, message]);
    } catch (error) {
      // The source repeats what it needs an answer to.
      this.#io.log(`migration reply to ${to} not sent: ${(error as Error).message}`);
    }
  }
}
