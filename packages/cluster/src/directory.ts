/**
 * The directory of one bucket: where each of its sessions lives (`sessionKey -> node, worker`).
 * Its owner (the bucket actor, on a worker of the bucket's owner node) is told of every create,
 * move and destroy in the bucket.
 *
 * During a handoff, updates can reach the new owner before the old owner's snapshot does. Rather
 * than holding them, the directory merges: an update that arrived first is newer than the
 * snapshot, so `install` only fills in keys the directory has not heard of (and does not bring
 * back keys removed meanwhile). Updates are therefore applied in arrival order and never lost.
 */
import type { DirectoryEntry } from './messages.js';

export interface SessionLocation {
  node: string;
  worker: number;
}

export class BucketDirectory {
  readonly #entries = new Map<string, SessionLocation>();
  /** Keys removed before the directory was installed: a late snapshot must not resurrect them. */
  readonly #removed = new Set<string>();
  installed = false;
  epoch = 0;

  constructor(readonly bucket: number) {}

  get size(): number {
    return this.#entries.size;
  }

  register(key: string, node: string, worker: number): void {
    this.#entries.set(key, { node, worker });
    this.#removed.delete(key);
  }

  /** Removes the entry if it still points at `node` (a stale removal must not undo a move). */
  unregister(key: string, node: string): void {
    const entry = this.#entries.get(key);
    if (entry !== undefined && entry.node !== node) return;
    this.#entries.delete(key);
    if (!this.installed) this.#removed.add(key);
  }

  lookup(key: string): SessionLocation | undefined {
    return this.#entries.get(key);
  }

  /** Merges a handed-off or rebuilt directory beneath what this one already heard. */
  install(epoch: number, entries: readonly DirectoryEntry[]): void {
    for (const [key, node, worker] of entries) {
      if (!this.#entries.has(key) && !this.#removed.has(key)) this.#entries.set(key, { node, worker });
    }
    this.#removed.clear();
    this.installed = true;
    this.epoch = Math.max(this.epoch, epoch);
  }

  entries(): DirectoryEntry[] {
    const list: DirectoryEntry[] = [];
    for (const [key, { node, worker }] of this.#entries) list.push([key, node, worker]);
    return list;
  }

  /** Drops entries pointing at a node that is gone (its sessions are no longer anywhere). */
  forgetNode(node: string): number {
    let dropped = 0;
    for (const [key, entry] of this.#entries) {
      if (entry.node === node) {
        this.#entries.delete(key);
        dropped++;
      }
    }
    return dropped;
  }
}
