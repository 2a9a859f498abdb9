/**
 * The messages cluster members exchange, declared once for the state machines, the node and the
 * simulator. Every message from the network is checked by `parseClusterMessage` before a state
 * machine sees it, so a malformed one is refused with a reason instead of corrupting state.
 */
import { InvalidArgument } from '@wadi/core';
import { validateLayout, type Layout } from './layout.js';
import { isMemberEntry, type MemberEntry } from './membership.js';

export type ClusterMessage =
  /**
   * The sender's member table and committed epoch: also the heartbeat, and how a node joins.
   * `at` is the sender's clock when it sent it; `echo` the last `at` it heard from the recipient;
   * `answer` marks the immediate answer to a heartbeat, which is not answered in turn (the quorum
   * lease, see `ClusterMember.quorumView`).
   */
  | { t: 'gossip'; members: MemberEntry[]; epoch: number; buckets: number; cluster: string; at?: number; echo?: number; answer?: boolean }
  /** "Can you reach `target`?" (an indirect probe for a member the sender suspects). */
  | { t: 'probe'; target: string; round: number }
  | { t: 'probe-reply'; target: string; round: number; reachable: boolean }
  /** The coordinator asks members to accept the next layout. */
  | { t: 'propose'; layout: Layout }
  | { t: 'accept'; epoch: number }
  /** Refused: the member already accepted or committed `highest`. */
  | { t: 'reject'; epoch: number; highest: number }
  /** A layout a majority accepted; also the answer to `layout-request`. */
  | { t: 'commit'; layout: Layout }
  | { t: 'layout-request' }
  /** A newly elected coordinator asks what each member committed and accepted. */
  | { t: 'state-request'; round: number }
  | { t: 'state-reply'; round: number; committed: Layout | null; accepted: Layout | null }
  /** The new owner of `bucket` (as of `epoch`) asks the previous owner for its directory. */
  | { t: 'handoff-request'; bucket: number; epoch: number }
  | { t: 'handoff-data'; bucket: number; epoch: number; entries: DirectoryEntry[] }
  /** The previous owner cannot hand off (it holds another epoch, or no longer has the bucket). */
  | { t: 'handoff-refused'; bucket: number; epoch: number; reason: string }
  /** The new owner of a bucket whose owner is gone asks every member what it hosts in it. */
  | { t: 'report-request'; bucket: number; epoch: number }
  | { t: 'report'; bucket: number; epoch: number; entries: DirectoryEntry[] }
  /**
   * The incoming backups of layout `epoch` the sender has not shipped every session of its to yet,
   * as `[bucket, member id]`: the coordinator reports a backup synced once no live member lists it.
   */
  | { t: 'replica-sync'; epoch: number; lagging: [bucket: number, member: string][] };

/**
 * One line of a bucket's directory: which node and worker host a session (`type` + NUL + `id`),
 * and the version of that location (each move of a session to a new place increments it), so that
 * of two claims for one session the newer wins whatever order they arrive in. A fifth element 1
 * marks a placement its node has not confirmed yet (see `BucketDirectory`).
 */
/**
 * A location; `unconfirmed` 1 while its node has not confirmed the owner's placement, `onDisk` 1
 * while the session is parked on that node's disk. A rebuild report may also carry replica lines
 * of nine elements (`replicaEntry` in replication.ts): not locations, but copies to fail over to.
 */
export type DirectoryEntry = [sessionKey: string, node: string, worker: number, version: number, unconfirmed?: 0 | 1, onDisk?: 0 | 1];

export type ClusterMessageType = ClusterMessage['t'];

/** Checks a value from the network; throws `InvalidArgument` naming what is wrong. */
export function parseClusterMessage(value: unknown, buckets: number): ClusterMessage {
  if (typeof value !== 'object' || value === null || typeof (value as { t?: unknown }).t !== 'string') {
    throw new InvalidArgument('cluster message without a type');
  }
  const message = value as ClusterMessage;
  const integer = (field: unknown, name: string): void => {
    if (!Number.isSafeInteger(field)) throw new InvalidArgument(`${message.t}: ${name} is not an integer`);
  };
  switch (message.t) {
    case 'gossip':
      if (!Array.isArray(message.members) || !message.members.every(isMemberEntry)) throw new InvalidArgument('gossip: malformed member entries');
      integer(message.epoch, 'epoch');
      integer(message.buckets, 'buckets');
      if (typeof message.cluster !== 'string') throw new InvalidArgument('gossip: cluster id is not a string');
      if (message.at !== undefined && !Number.isFinite(message.at)) throw new InvalidArgument('gossip: at is not a finite number');
      if (message.echo !== undefined && !Number.isFinite(message.echo)) throw new InvalidArgument('gossip: echo is not a finite number');
      if (message.answer !== undefined && typeof message.answer !== 'boolean') throw new InvalidArgument('gossip: answer is not a boolean');
      return message;
    case 'probe':
    case 'probe-reply':
      if (typeof message.target !== 'string') throw new InvalidArgument(`${message.t}: no target`);
      integer(message.round, 'round');
      if (message.t === 'probe-reply' && typeof message.reachable !== 'boolean') throw new InvalidArgument('probe-reply: reachable is not a boolean');
      return message;
    case 'propose':
    case 'commit':
      validateLayout(message.layout, buckets);
      return message;
    case 'accept':
      integer(message.epoch, 'epoch');
      return message;
    case 'reject':
      integer(message.epoch, 'epoch');
      integer(message.highest, 'highest');
      return message;
    case 'layout-request':
      return message;
    case 'replica-sync':
      integer(message.epoch, 'epoch');
      if (!Array.isArray(message.lagging) || !message.lagging.every((pair) => Array.isArray(pair) && pair.length === 2 && Number.isSafeInteger(pair[0]) && typeof pair[1] === 'string')) {
        throw new InvalidArgument('replica-sync: malformed pairs');
      }
      return message;
    case 'state-request':
      integer(message.round, 'round');
      return message;
    case 'state-reply':
      integer(message.round, 'round');
      if (message.committed !== null) validateLayout(message.committed, buckets);
      if (message.accepted !== null) validateLayout(message.accepted, buckets);
      return message;
    case 'handoff-request':
    case 'handoff-data':
    case 'handoff-refused':
    case 'report-request':
    case 'report':
      integer(message.bucket, 'bucket');
      integer(message.epoch, 'epoch');
      if (message.bucket < 0 || message.bucket >= buckets) throw new InvalidArgument(`${message.t}: bucket ${message.bucket} is out of range`);
      if ((message.t === 'handoff-data' || message.t === 'report') && !(Array.isArray(message.entries) && message.entries.every(isDirectoryEntry))) {
        throw new InvalidArgument(`${message.t}: malformed directory entries`);
      }
      if (message.t === 'handoff-refused' && typeof message.reason !== 'string') throw new InvalidArgument('handoff-refused: no reason');
      return message;
    default:
      throw new InvalidArgument(`unknown cluster message type '${String((message as { t: unknown }).t)}'`);
  }
}

function isDirectoryEntry(value: unknown): value is DirectoryEntry {
  // A rebuild report's replica line (see `replicaEntry` in replication.ts).
  if (Array.isArray(value) && value.length === 9) {
    return typeof value[0] === 'string' && typeof value[1] === 'string' && value[6] === 1 && [2, 3, 7, 8].every((i) => Number.isSafeInteger(value[i]) && (value[i] as number) >= 0);
  }
  return (
    Array.isArray(value) &&
    value.length >= 4 &&
    value.length <= 6 &&
    (value.length < 5 || value[4] === 0 || value[4] === 1) &&
    (value.length < 6 || value[5] === 0 || value[5] === 1) &&
    typeof value[0] === 'string' &&
    typeof value[1] === 'string' &&
    Number.isSafeInteger(value[2]) &&
    Number.isSafeInteger(value[3]) &&
    (value[3] as number) >= 0
  );
}
