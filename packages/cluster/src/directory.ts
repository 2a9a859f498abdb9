/**
 * The directory of one bucket: where each of its sessions lives (`sessionKey -> node, worker`),
 * with the version of that location. Its owner (the bucket actor, on a worker of the bucket's
 * owner node) is told of every create, move and destroy in the bucket.
 *
 * Updates about one session come from different nodes over different connections, so they can
 * arrive in any order; the version decides: a claim older than the entry is ignored, and a removal
 * only removes the location it names, at or below its version.
 *
 * During a handoff, updates can reach the new owner before the old owner's snapshot does. Rather
 * than holding them, the directory merges: `install` fills in what the directory has not heard of
 * or only heard older of, and does not bring back what was removed meanwhile.
 *
 * A node that may have lost updates (its connection to the owner broke) re-announces what each of
 * its workers hosts in the bucket (`sync`): that list is the truth for that node and worker.
 */
import { groupOf } from '@wadi/core';
import type { DirectoryEntry } from './messages.js';

export interface SessionLocation {
  node: string;
  worker: number;
  version: number;
  /**
   * False while the bucket actor's own placement has not been confirmed by the node it chose: a
   * sync from that node may have been taken before the activation, so it must not remove it.
   */
  confirmed: boolean;
  /** The session is parked on that node's disk (demoted), not active in its memory. */
  onDisk: boolean;
}

export class BucketDirectory {
  readonly #entries = new Map<string, SessionLocation>();
  /** The keys of each group's sessions: a group lives on one node, so a new session joins the others. */
  readonly #groups = new Map<string, Set<string>>();
  /** Placements not confirmed yet, with when they were made. */
  readonly #unconfirmed = new Map<string, number>();
  /** Keys removed before the directory was installed, with the version removed: a late snapshot must not resurrect them. */
  readonly #removed = new Map<string, number>();
  /** Syncs heard before the directory was installed (`node/worker` -> what it hosts): they filter the snapshot too. */
  readonly #synced = new Map<string, Set<string>>();
  installed = false;
  epoch = 0;

  constructor(readonly bucket: number) {}

  get size(): number {
    return this.#entries.size;
  }

  /** Records `node`/`worker` as the session's location; false when the entry is newer (the claim is stale). */
  register(key: string, node: string, worker: number, version = 0, confirmed = true, at = 0, onDisk?: boolean): boolean {
    const entry = this.#entries.get(key);
    if (entry !== undefined && entry.version > version) return false;
    const same = entry !== undefined && entry.node === node && entry.version === version;
    const already = same && entry.confirmed;
    // A claim that does not say where the session is (memory or disk) keeps what is known.
    this.#set(key, { node, worker, version, confirmed: confirmed || already, onDisk: onDisk ?? (same && entry.onDisk) });
    if (confirmed || already) this.#unconfirmed.delete(key);
    else this.#unconfirmed.set(key, at);
    this.#removed.delete(key);
    return true;
  }

  /** The session at `node` (this location version) was demoted to its disk, or promoted back to memory. */
  setTier(key: string, node: string, version: number, onDisk: boolean): void {
    const entry = this.#entries.get(key);
    if (entry !== undefined && entry.node === node && entry.version === version) entry.onDisk = onDisk;
  }

  /** Removes the entry if it still points at `node` with this version or an older one (a stale removal must not undo a move). */
  unregister(key: string, node: string, version = 0): void {
    const entry = this.#entries.get(key);
    if (entry !== undefined && (entry.node !== node || entry.version > version)) return;
    this.#delete(key);
    if (!this.installed) this.#removed.set(key, Math.max(version, this.#removed.get(key) ?? 0));
  }

  /**
   * `node`/`worker` hosts exactly `sessions` ([key, version]) in this bucket: claim them, drop the
   * rest. Returns the claims older than a location this directory has on another node: copies that
   * node keeps of sessions that moved on, or were created again elsewhere while it was down.
   */
  sync(node: string, worker: number, sessions: readonly (readonly [key: string, version: number, onDisk?: 0 | 1])[]): string[] {
    const listed = new Set<string>();
    const stale: string[] = [];
    for (const [key, version, onDisk] of sessions) {
      listed.add(key);
      if (!this.register(key, node, worker, version, true, 0, onDisk === undefined ? undefined : onDisk === 1) && this.#entries.get(key)!.node !== node) stale.push(key);
    }
    for (const [key, entry] of this.#entries) {
      if (entry.node === node && entry.worker === worker && entry.confirmed && !listed.has(key)) this.#delete(key);
    }
    if (!this.installed) this.#synced.set(`${node}/${worker}`, listed);
    return stale;
  }

  lookup(key: string): SessionLocation | undefined {
    return this.#entries.get(key);
  }

  /** Where some session of `group` is, if any is in this directory. */
  groupLocation(group: string): SessionLocation | undefined {
    const keys = this.#groups.get(group);
    if (keys === undefined) return undefined;
    for (const key of keys) return this.#entries.get(key);
    return undefined;
  }

  #set(key: string, location: SessionLocation): void {
    if (!this.#entries.has(key)) {
      const group = groupOfKey(key);
      let keys = this.#groups.get(group);
      if (keys === undefined) this.#groups.set(group, (keys = new Set()));
      keys.add(key);
    }
    this.#entries.set(key, location);
  }

  /**
   * Drops placements made before `before` that their node never confirmed: the grant was lost with
   * a connection, so the session was never activated (a late grant cannot come this long after).
   */
  expireUnconfirmed(before: number): number {
    let expired = 0;
    for (const [key, at] of this.#unconfirmed) {
      if (at >= before) continue;
      this.#delete(key);
      expired++;
    }
    return expired;
  }

  #delete(key: string): void {
    this.#unconfirmed.delete(key);
    if (!this.#entries.delete(key)) return;
    const group = groupOfKey(key);
    const keys = this.#groups.get(group);
    keys?.delete(key);
    if (keys?.size === 0) this.#groups.delete(group);
  }

  /**
   * Merges a handed-off or rebuilt directory beneath what this one already heard. Returns the
   * entries that lost to a newer location on another node: in a rebuild, copies their nodes keep of
   * sessions that live elsewhere now.
   */
  install(epoch: number, entries: readonly DirectoryEntry[], now = 0): DirectoryEntry[] {
    for (const [key, node, worker, version, unconfirmed, onDisk] of entries) {
      const removed = this.#removed.get(key);
      if (removed !== undefined && removed >= version) continue;
      // A sync heard meanwhile may predate the activation of a placement still unconfirmed.
      if (unconfirmed !== 1 && this.#synced.get(`${node}/${worker}`)?.has(key) === false) continue;
      const entry = this.#entries.get(key);
      if (entry === undefined || entry.version < version) this.register(key, node, worker, version, unconfirmed !== 1, now, onDisk === 1);
    }
    this.#removed.clear();
    this.#synced.clear();
    this.installed = true;
    this.epoch = Math.max(this.epoch, epoch);
    return entries.filter(([key, node, , version]) => {
      const entry = this.#entries.get(key);
      return entry !== undefined && entry.version > version && entry.node !== node;
    });
  }

  entries(): DirectoryEntry[] {
    const list: DirectoryEntry[] = [];
    for (const [key, { node, worker, version, confirmed, onDisk }] of this.#entries) {
      if (onDisk) list.push([key, node, worker, version, confirmed ? 0 : 1, 1]);
      else list.push(confirmed ? [key, node, worker, version] : [key, node, worker, version, 1]);
    }
    return list;
  }

  /** Drops entries pointing at a node that is gone (its sessions are no longer anywhere). */
  forgetNode(node: string): number {
    let dropped = 0;
    for (const [key, entry] of this.#entries) {
      if (entry.node === node) {
        this.#delete(key);
        dropped++;
      }
    }
    return dropped;
  }
}

/** The group of a session key (`type` NUL `id`). */
export function groupOfKey(key: string): string {
  return groupOf(key.slice(key.indexOf('\u0000') + 1));
}
