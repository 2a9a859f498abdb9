/**
 * The layout: which node (and which of its workers) owns each bucket, which nodes back it up,
 * stamped with an epoch that only grows. A layout is a plain value that every member keeps and
 * persists; nothing about it is known only to the coordinator.
 */
import { InvalidArgument } from '@wadi/core';

/** The most backups per bucket a layout may ask for: copies cost memory on every holder. */
export const MAX_REPLICAS = 8;

/** A member as a layout records it: enough to reach it and to place buckets on its workers. */
export interface LayoutMember {
  id: string;
  incarnation: number;
  url: string;
  /** Worker threads of that node: bucket b lives on worker `b % workers`. */
  workers: number;
}

export interface Layout {
  /**
   * Which cluster this layout belongs to: `id@incarnation` of the node that formed it. Two
   * clusters formed apart (say, a first seed restarted without its data during a partition) both
   * count epochs from 1; their layouts must never be mistaken for each other's.
   */
  cluster: string;
  epoch: number;
  buckets: number;
  /** The members that own buckets in this layout, in a stable order. */
  members: LayoutMember[];
  /** owners[b] is an index into `members`. */
  owners: number[];
  /** R: backups per bucket besides its owner. Absent in layouts from before backups existed: 0. */
  replicas?: number;
  /**
   * R slots per bucket, flat (one small integer per slot, compact on the wire for 1024+ buckets):
   * `backups[b * replicas + k]` is an index into `members`, or -1 for an unused slot, used slots
   * first. Never the bucket's owner, never one member twice. A bucket has fewer than R backups
   * only when fewer other members may hold them. Absent or empty when `replicas` is 0.
   */
  backups?: number[];
  /**
   * The backups still receiving their copy, sorted by bucket: `[bucket, member, retiring]`, where
   * `member` is one of the bucket's backups, and `retiring` (a member that is neither its owner
   * nor its backup) keeps the complete copy it holds until `member` has one, or is -1. A bucket's
   * complete copies are its owner, its backups that are not incoming, and its retiring members.
   * Absent or empty when none.
   */
  incoming?: [bucket: number, member: number, retiring: number][];
  /** The coordinator that committed this layout. */
  coordinator: string;
}

/** The owner of bucket `bucket`. */
export function ownerOf(layout: Layout, bucket: number): LayoutMember {
  return layout.members[layout.owners[bucket]!]!;
}

/** The worker of its owner node that hosts bucket `bucket`. */
export function workerOf(layout: Layout, bucket: number): number {
  return bucket % ownerOf(layout, bucket).workers;
}

/** The owner node id of every bucket, in bucket order. */
export function ownerIds(layout: Layout): string[] {
  return layout.owners.map((owner) => layout.members[owner]!.id);
}

/** How many buckets each member id owns. */
export function ownedCounts(layout: Layout): Map<string, number> {
  const counts = new Map<string, number>(layout.members.map((member) => [member.id, 0]));
  for (const owner of layout.owners) {
    const id = layout.members[owner]!.id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/** R of a layout (0 for layouts from before backups). */
export function replicasOf(layout: Layout): number {
  return layout.replicas ?? 0;
}

/** The backups of bucket `bucket` (incoming ones included), as indexes into `members`. */
export function backupsOf(layout: Layout, bucket: number): number[] {
  const replicas = replicasOf(layout);
  const result: number[] = [];
  for (let k = 0; k < replicas; k++) {
    const member = layout.backups?.[bucket * replicas + k] ?? -1;
    if (member < 0) break;
    result.push(member);
  }
  return result;
}

/** The backup ids of every bucket, in bucket order (the planner's `backups` input). */
export function backupIds(layout: Layout): string[][] {
  return layout.owners.map((_, bucket) => backupsOf(layout, bucket).map((member) => layout.members[member]!.id));
}

/** The incoming backups by id (the planner's `incoming` input). */
export function incomingIds(layout: Layout): { bucket: number; id: string; retiring: string | null }[] {
  return (layout.incoming ?? []).map(([bucket, member, retiring]) => ({
    bucket,
    id: layout.members[member]!.id,
    retiring: retiring < 0 ? null : layout.members[retiring]!.id,
  }));
}

/**
 * The members holding a complete copy of bucket `bucket`, as indexes into `members`: its owner
 * first, then its backups that are not incoming, then its retiring members. These are the copies
 * a failover may rely on; an incoming backup is not one until a later layout says so.
 */
export function copyHolders(layout: Layout, bucket: number): number[] {
  const incoming = (layout.incoming ?? []).filter(([b]) => b === bucket);
  const holders = [layout.owners[bucket]!];
  for (const member of backupsOf(layout, bucket)) if (!incoming.some(([, m]) => m === member)) holders.push(member);
  for (const [, , retiring] of incoming) if (retiring >= 0) holders.push(retiring);
  return holders;
}

/** How many bucket backups (incoming included, retiring not) each member id holds. */
export function backupCounts(layout: Layout): Map<string, number> {
  const counts = new Map<string, number>(layout.members.map((member) => [member.id, 0]));
  for (const member of layout.backups ?? []) {
    if (member < 0) continue;
    const id = layout.members[member]!.id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/** The buckets owned by node `id`. */
export function bucketsOf(layout: Layout, id: string): number[] {
  const index = layout.members.findIndex((member) => member.id === id);
  const buckets: number[] = [];
  if (index < 0) return buckets;
  for (let bucket = 0; bucket < layout.owners.length; bucket++) if (layout.owners[bucket] === index) buckets.push(bucket);
  return buckets;
}

/**
 * Checks a layout that arrived from the network or from disk: a malformed one is refused with a
 * message naming what is wrong, never half-applied.
 */
export function validateLayout(value: unknown, buckets?: number): Layout {
  const fail = (why: string): never => {
    throw new InvalidArgument(`invalid layout: ${why}`);
  };
  if (typeof value !== 'object' || value === null) return fail('not an object');
  const layout = value as Partial<Layout>;
  if (!Number.isSafeInteger(layout.epoch) || layout.epoch! < 1) fail(`epoch ${String(layout.epoch)} is not a positive integer`);
  if (!Number.isSafeInteger(layout.buckets) || layout.buckets! < 1) fail(`bucket count ${String(layout.buckets)}`);
  if (buckets !== undefined && layout.buckets !== buckets) fail(`it has ${layout.buckets} buckets, this cluster ${buckets}`);
  if (typeof layout.coordinator !== 'string') fail('no coordinator');
  if (typeof layout.cluster !== 'string' || layout.cluster === '') fail('no cluster id');
  if (!Array.isArray(layout.members) || layout.members.length === 0) return fail('no members');
  const ids = new Set<string>();
  for (const member of layout.members) {
    if (typeof member !== 'object' || member === null) fail('a member is not an object');
    if (typeof member.id !== 'string' || member.id === '' || ids.has(member.id)) fail(`member id ${String(member.id)} is empty or repeated`);
    ids.add(member.id);
    if (!Number.isSafeInteger(member.incarnation) || typeof member.url !== 'string') fail(`member ${member.id} lacks an incarnation or url`);
    if (!Number.isSafeInteger(member.workers) || member.workers < 1) fail(`member ${member.id} has ${String(member.workers)} workers`);
  }
  if (!Array.isArray(layout.owners) || layout.owners.length !== layout.buckets) fail('owners do not cover every bucket');
  for (const owner of layout.owners!) {
    if (!Number.isInteger(owner) || owner < 0 || owner >= layout.members.length) fail(`owner index ${String(owner)} is out of range`);
  }
  validateBackups(layout as Layout, fail);
  return layout as Layout;
}

/** The backup fields of a layout whose members and owners are already checked. */
function validateBackups(layout: Layout, fail: (why: string) => never): void {
  const { replicas, backups, incoming, owners, buckets } = layout;
  const members = layout.members.length;
  if (replicas !== undefined && (!Number.isSafeInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS)) {
    fail(`replicas ${String(replicas)} is not an integer from 0 to ${MAX_REPLICAS}`);
  }
  const r = replicas ?? 0;
  if (backups === undefined) {
    if (r > 0) fail(`replicas ${r} without backups`);
  } else {
    if (!Array.isArray(backups) || backups.length !== buckets * r) fail(`backups must hold ${r} slots for each of ${buckets} buckets`);
    for (let bucket = 0; bucket < buckets; bucket++) {
      let unused = false;
      for (let k = 0; k < r; k++) {
        const member: unknown = backups[bucket * r + k];
        if (!Number.isInteger(member) || (member as number) < -1 || (member as number) >= members) fail(`backup index ${String(member)} of bucket ${bucket} is out of range`);
        if (member === -1) {
          unused = true;
          continue;
        }
        if (unused) fail(`bucket ${bucket} has a backup after an unused slot`);
        if (member === owners[bucket]) fail(`bucket ${bucket} lists its owner as a backup`);
        for (let j = 0; j < k; j++) if (backups[bucket * r + j] === member) fail(`bucket ${bucket} lists backup ${String(member)} twice`);
      }
    }
  }
  if (incoming === undefined) return;
  if (!Array.isArray(incoming) || incoming.length > buckets * r) fail('incoming is not a list of at most one entry per backup slot');
  let previous = -1;
  const seen = new Set<number>();
  const retiring = new Set<number>();
  for (const entry of incoming) {
    if (!Array.isArray(entry) || entry.length !== 3 || !entry.every((n) => Number.isInteger(n))) fail('an incoming entry is not [bucket, member, retiring]');
    const [bucket, member, partner] = entry;
    if (bucket < 0 || bucket >= buckets || bucket < previous) fail(`incoming bucket ${bucket} is out of range or out of order`);
    if (bucket !== previous) {
      seen.clear();
      retiring.clear();
      previous = bucket;
    }
    const slots = backups!.slice(bucket * r, bucket * r + r);
    if (member < 0 || !slots.includes(member) || seen.has(member)) fail(`incoming member ${member} is not a backup of bucket ${bucket}, or is listed twice`);
    seen.add(member);
    if (partner === -1) continue;
    if (partner < 0 || partner >= members || partner === owners[bucket] || slots.includes(partner) || retiring.has(partner)) {
      fail(`retiring member ${partner} of bucket ${bucket} is out of range, its owner, its backup, or listed twice`);
    }
    retiring.add(partner);
  }
}
