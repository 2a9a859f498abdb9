/**
 * The `sync` replies a node's main thread holds for its workers (see docs/cluster.md,
 * "Replication", "Where a sync reply waits").
 *
 * A `sync` turn's reply for a caller on another node would otherwise wait on the host's worker
 * until the replicas' acknowledgements reached it, and then go back out through the main thread:
 * two thread wake-ups more, on the path of every replicated write. Every acknowledgement from
 * another node passes the main thread first, so the worker hands the reply to it at once
 * (`HeldFrame`: the write it waits for and the replica targets the worker ships it to), and the
 * main thread lets it go as soon as every one of those targets acknowledged that write or a later
 * one of the same session, location version and incarnation (acknowledgements are cumulative).
 * The worker shipped the reply with its write, and each target that takes the write delivers it to
 * the caller itself (`ReplicatedResultFrame`). A reply every target says it delivered, in the
 * write's layout epoch, is dropped here when let go: the caller, by the same rule, took it already.
 * (A copy the caller no longer needs would cost it a wake-up on every replicated write.)
 *
 * The worker stays in charge: it still tracks the acknowledgements, ships again, retargets and
 * fails writes. The acknowledgement that let a reply go here goes on to the worker saying so
 * (`released`), and the worker sends its own word (`HeldOutcomeFrame`) only for a reply it settles
 * otherwise; whichever comes first lets the reply go, the other is ignored.
 * The main thread gives up deciding by itself, and waits for the worker's word, whenever the
 * acknowledgements might not mean what the worker would take them for: a target refused a write of
 * the session (the worker fails the reply with `Fenced`, or takes an `older` refusal of a session
 * that moved on as done), the layout changed (targets may have moved), or a target node went down
 * or restarted (what it acknowledged may be gone). So the main thread never lets a reply go that
 * the worker would still hold or fail, and it costs the worker nothing to be slower.
 */
import type { ErrorShape } from '@wadi/core';
import type { ReplicaMessage } from './replication.js';
import type { ResultFrame } from './routing.js';

/** A held reply is dropped after this long without being let go: its caller gave up long before. */
export const HELD_REPLY_EXPIRES_MS = 120_000;

interface Held {
  thread: number;
  id: number;
  key: string;
  version: number;
  seq: number;
  /** Targets that have not acknowledged the write yet. */
  waiting: Set<string>;
  /** The main thread no longer decides on acknowledgements: only the worker's word lets it go. */
  workerDecides: boolean;
  toNode: string;
  result: ResultFrame;
  /** The layout epoch the targets were chosen by, and the targets that delivered the reply in it. */
  epoch: number;
  toldBy: Set<string>;
  targets: number;
  since: number;
}

/** A frame to send now (null: nothing to send) to thread `frame[1]` of node `toNode`; `id` is the worker's. */
export type ReleasedReply = [toNode: string, frame: ResultFrame | null, id: number];

export class HeldReplies {
  readonly #incarnation: number;
  /** `thread:id` -> held reply. */
  readonly #byId = new Map<string, Held>();
  /** `thread\0key` -> held replies of that session on that worker, oldest first. */
  readonly #byKey = new Map<string, Held[]>();
  /** Replies let go on the acknowledgements (before the worker's word), and of those, the ones every target delivered itself. */
  releasedEarly = 0;
  deliveredByReplicas = 0;

  /** `incarnation`: this node's, the writer incarnation of every held write. */
  constructor(incarnation: number) {
    this.#incarnation = incarnation;
  }

  get size(): number {
    return this.#byId.size;
  }

  /** A worker hands over a reply. Targets empty: the worker alone decides. */
  hold(thread: number, id: number, key: string, version: number, seq: number, targets: readonly string[], epoch: number, toNode: string, result: ResultFrame, now: number): void {
    const held: Held = { thread, id, key, version, seq, waiting: new Set(targets), workerDecides: targets.length === 0, toNode, result, epoch, toldBy: new Set(), targets: targets.length, since: now };
    this.#byId.set(`${thread}:${id}`, held);
    const name = `${thread}\u0000${key}`;
    const list = this.#byKey.get(name);
    if (list === undefined) this.#byKey.set(name, [held]);
    else list.push(held);
  }

  /** The worker's word on a reply it handed over: what to send, unless it was let go already. */
  outcome(thread: number, id: number, error: ErrorShape | null): ReleasedReply | undefined {
    const held = this.#byId.get(`${thread}:${id}`);
    if (held === undefined) return undefined;
    this.#remove(held);
    const [kind, toThread, toIncarnation, requestId, , , notice] = held.result;
    if (error === null) return [held.toNode, held.result, id];
    return [held.toNode, [kind, toThread, toIncarnation, requestId, false, error, notice], id];
  }

  /**
   * An `ack` from node `from` for worker `thread` passes: the replies it completes, to send now
   * unless every target delivered them. (The acknowledgement goes on to the worker as well.)
   */
  acked(from: string, thread: number, ack: Extract<ReplicaMessage, { t: 'ack' }>): ReleasedReply[] {
    const { items, refused, epoch } = ack;
    const told = ack.told === undefined ? undefined : new Set(ack.told.map(([node, thread, requestId]) => `${node}\u0000${thread}\u0000${requestId}`));
    for (const [key, version, incarnation] of refused) {
      if (incarnation !== this.#incarnation) continue;
      for (const held of this.#byKey.get(`${thread}\u0000${key}`) ?? []) if (held.version === version) held.workerDecides = true;
    }
    const released: ReleasedReply[] = [];
    for (const [key, version, incarnation, seq] of items) {
      if (incarnation !== this.#incarnation) continue;
      const list = this.#byKey.get(`${thread}\u0000${key}`);
      if (list === undefined) continue;
      for (const held of [...list]) {
        if (held.workerDecides || held.version !== version || held.seq > seq || !held.waiting.delete(from)) continue;
        const [, toThread, , requestId] = held.result;
        if (epoch === held.epoch && told?.has(`${held.toNode}\u0000${toThread}\u0000${requestId}`) === true) held.toldBy.add(from);
        if (held.waiting.size > 0) continue;
        this.#remove(held);
        this.releasedEarly++;
        const delivered = held.toldBy.size === held.targets;
        if (delivered) this.deliveredByReplicas++;
        released.push([held.toNode, delivered ? null : held.result, held.id]);
      }
    }
    return released;
  }

  /** The layout changed: replica targets may have moved, so the workers decide on what is held now. */
  layoutChanged(): void {
    for (const held of this.#byId.values()) held.workerDecides = true;
  }

  /** Node `node` went down or restarted: what it acknowledged may be lost; the workers decide on what waits for it. */
  targetGone(node: string): void {
    for (const held of this.#byId.values()) if (held.waiting.has(node)) held.workerDecides = true;
  }

  /** Worker `thread` is gone (its word will never come): its held replies go with it, as its other replies did. */
  threadGone(thread: number): void {
    for (const held of [...this.#byId.values()]) if (held.thread === thread) this.#remove(held);
  }

  /** Drops replies held past `HELD_REPLY_EXPIRES_MS`; returns how many. */
  expire(now: number): number {
    let expired = 0;
    for (const held of [...this.#byId.values()]) {
      if (now - held.since < HELD_REPLY_EXPIRES_MS) continue;
      this.#remove(held);
      expired++;
    }
    return expired;
  }

  #remove(held: Held): void {
    this.#byId.delete(`${held.thread}:${held.id}`);
    const name = `${held.thread}\u0000${held.key}`;
    const list = this.#byKey.get(name);
    if (list === undefined) return;
    const index = list.indexOf(held);
    if (index >= 0) list.splice(index, 1);
    if (list.length === 0) this.#byKey.delete(name);
  }
}
