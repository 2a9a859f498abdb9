/**
 * A small min-cost max-flow (successive shortest paths, Bellman-Ford on the residual graph), for
 * test oracles only: exact, simple, and slow enough that callers keep graphs to a few hundred
 * edges.
 */
export class MinCostFlow {
  readonly #to: number[] = [];
  readonly #cap: number[] = [];
  readonly #cost: number[] = [];
  readonly #out: number[][];

  constructor(readonly nodes: number) {
    this.#out = Array.from({ length: nodes }, () => []);
  }

  add(from: number, to: number, cap: number, cost: number): void {
    if (cap <= 0) return;
    this.#out[from]!.push(this.#to.length);
    this.#to.push(to);
    this.#cap.push(cap);
    this.#cost.push(cost);
    this.#out[to]!.push(this.#to.length);
    this.#to.push(from);
    this.#cap.push(0);
    this.#cost.push(-cost);
  }

  /** Pushes as much flow as possible from `source` to `sink` at least cost: [flow, cost]. */
  run(source: number, sink: number): [number, number] {
    let flow = 0;
    let total = 0;
    for (let round = 0; round < 100_000; round++) {
      const dist = new Array<number>(this.nodes).fill(Infinity);
      const via = new Array<number>(this.nodes).fill(-1);
      dist[source] = 0;
      for (let pass = 0; pass < this.nodes; pass++) {
        let changed = false;
        for (let u = 0; u < this.nodes; u++) {
          if (dist[u] === Infinity) continue;
          for (const e of this.#out[u]!) {
            if (this.#cap[e]! > 0 && dist[u]! + this.#cost[e]! < dist[this.#to[e]!]!) {
              dist[this.#to[e]!] = dist[u]! + this.#cost[e]!;
              via[this.#to[e]!] = e;
              changed = true;
            }
          }
        }
        if (!changed) break;
      }
      if (dist[sink] === Infinity) break;
      let push = Infinity;
      for (let v = sink; v !== source; v = this.#to[via[v]! ^ 1]!) push = Math.min(push, this.#cap[via[v]!]!);
      for (let v = sink; v !== source; v = this.#to[via[v]! ^ 1]!) {
        this.#cap[via[v]!]! -= push;
        this.#cap[via[v]! ^ 1]! += push;
      }
      flow += push;
      total += push * dist[sink]!;
    }
    return [flow, total];
  }
}
