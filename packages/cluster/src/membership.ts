/**
 * The member table that every node keeps and gossips. Entries merge as a join-semilattice, so
 * gossip converges whatever order it arrives in: a higher incarnation of a node id replaces the
 * lower (a restarted node is a new member), and within one incarnation the state only advances
 * joining -> up -> leaving -> down. `down` is final for that incarnation.
 *
 * Whether a member is reachable right now (`suspect`) is each node's own observation and is not
 * gossiped; see `FailureDetector`.
 */

export type MemberState = 'joining' | 'up' | 'leaving' | 'down';
/** What `/status` reports: the gossiped state, or `suspect` where this node cannot reach it. */
export type ObservedState = MemberState | 'suspect';

export interface MemberEntry {
  id: string;
  incarnation: number;
  url: string;
  workers: number;
  state: MemberState;
  /** Order of admission (1 = first); 0 until the member is up. The election's notion of age. */
  upNumber: number;
}

const RANK: Record<MemberState, number> = { joining: 0, up: 1, leaving: 2, down: 3 };

/** The entry that wins when two views of one node meet; undefined when `incoming` adds nothing. */
export function mergeEntry(current: MemberEntry | undefined, incoming: MemberEntry): MemberEntry | undefined {
  if (current === undefined || incoming.incarnation > current.incarnation) return { ...incoming };
  if (incoming.incarnation < current.incarnation) return undefined;
  const state = RANK[incoming.state] > RANK[current.state] ? incoming.state : current.state;
  const upNumber = Math.max(current.upNumber, incoming.upNumber);
  if (state === current.state && upNumber === current.upNumber) return undefined;
  return { ...current, state, upNumber };
}

/** True for an entry that could be a member: well-formed, with a known state. */
export function isMemberEntry(value: unknown): value is MemberEntry {
  if (typeof value !== 'object' || value === null) return false;
  const entry = value as Partial<MemberEntry>;
  return (
    typeof entry.id === 'string' &&
    entry.id.length > 0 &&
    entry.id.length <= 256 &&
    Number.isSafeInteger(entry.incarnation) &&
    typeof entry.url === 'string' &&
    Number.isSafeInteger(entry.workers) &&
    entry.workers! >= 1 &&
    typeof entry.state === 'string' &&
    Object.hasOwn(RANK, entry.state) &&
    Number.isSafeInteger(entry.upNumber)
  );
}

export class MemberTable {
  readonly #entries = new Map<string, MemberEntry>();

  constructor(self: MemberEntry) {
    this.#entries.set(self.id, { ...self });
  }

  get(id: string): MemberEntry | undefined {
    return this.#entries.get(id);
  }

  all(): MemberEntry[] {
    return [...this.#entries.values()];
  }

  /** Members that are not down, i.e. still part of the cluster. */
  live(): MemberEntry[] {
    return this.all().filter((entry) => entry.state !== 'down');
  }

  /** Merges one entry; returns the new entry when it changed the table. */
  merge(incoming: MemberEntry): MemberEntry | undefined {
    const merged = mergeEntry(this.#entries.get(incoming.id), incoming);
    if (merged !== undefined) this.#entries.set(merged.id, merged);
    return merged;
  }

  /** A local transition of one member (a no-op if it would move the state backwards). */
  advance(id: string, state: MemberState, upNumber?: number): MemberEntry | undefined {
    const current = this.#entries.get(id);
    if (current === undefined) return undefined;
    return this.merge({ ...current, state, upNumber: upNumber ?? current.upNumber });
  }

  nextUpNumber(): number {
    let max = 0;
    for (const entry of this.#entries.values()) max = Math.max(max, entry.upNumber);
    return max + 1;
  }
}
