/**
 * The layout: which node (and which of its workers) owns each bucket, stamped with an epoch that
 * only grows. A layout is a plain value that every member keeps and persists; nothing about it is
 * known only to the coordinator.
 */
import { InvalidArgument } from '@wadi/core';

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
  return layout as Layout;
}
