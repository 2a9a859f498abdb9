/**
 * What happened in a simulated run, in order: faults injected, layouts committed, handoffs,
 * sessions, and what the nodes logged. A failing property prints it; two runs of one seed and
 * schedule produce the same trace byte for byte (its `digest` compares them cheaply).
 */
export interface TraceEntry {
  at: number;
  /** The node it concerns, or '' for the simulator itself. */
  node: string;
  kind: string;
  detail: string;
}

export class Trace {
  readonly entries: TraceEntry[] = [];
  #digest = 0x811c9dc5;

  constructor(readonly limit = 200_000) {}

  add(at: number, node: string, kind: string, detail: string): void {
    const line = format({ at, node, kind, detail });
    // FNV-1a over every line, kept even past the limit, so a replay is compared in full.
    let hash = this.#digest;
    for (let i = 0; i < line.length; i++) {
      hash ^= line.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193);
    }
    this.#digest = hash >>> 0;
    if (this.entries.length < this.limit) this.entries.push({ at, node, kind, detail });
  }

  /** A hash of the whole trace: equal for two runs of one seed and schedule. */
  get digest(): string {
    return this.#digest.toString(16).padStart(8, '0');
  }

  /** The last `lines` entries (all by default), one per line, for a person to read. */
  format(lines = Infinity, filter?: (entry: TraceEntry) => boolean): string {
    const selected = filter === undefined ? this.entries : this.entries.filter(filter);
    const shown = selected.slice(Math.max(0, selected.length - lines));
    const skipped = selected.length - shown.length;
    return (skipped > 0 ? `... ${skipped} earlier entries\n` : '') + shown.map(format).join('\n');
  }
}

function format(entry: TraceEntry): string {
  const seconds = (entry.at / 1000).toFixed(3).padStart(9);
  return `${seconds}s ${(entry.node || '-').padEnd(4)} ${entry.kind.padEnd(10)} ${entry.detail}`;
}
