/**
 * Routing inside a node: a session actor lives on the worker that its bucket is assigned to;
 * stateless actor types run on the main thread's pool. Every thread holds the same table.
 */
import { LOCAL, bucketOf, type AnyActorDef, type Router } from '@wadi/core';

/** Buckets of recently routed ids, so a hot id is hashed once, not once per message. */
const BUCKET_CACHE_LIMIT = 4096;

export class BucketRouter implements Router {
  readonly #cache = new Map<string, number>();

  constructor(
    readonly buckets: number,
    /** bucket -> worker index */
    readonly table: Int32Array,
    readonly selfIndex: number,
    readonly statelessDestination: number,
  ) {}

  route(def: AnyActorDef, id: string): number {
    if (def.stateless) return this.statelessDestination;
    const worker = this.table[this.bucketOf(id)]!;
    return worker === this.selfIndex ? LOCAL : worker;
  }

  bucketOf(id: string): number {
    let bucket = this.#cache.get(id);
    if (bucket === undefined) {
      bucket = bucketOf(id, this.buckets);
      if (this.#cache.size >= BUCKET_CACHE_LIMIT) this.#cache.clear();
      this.#cache.set(id, bucket);
    }
    return bucket;
  }
}

/** The initial placement of buckets on workers: round robin. */
export function roundRobinTable(buckets: number, workers: number): Int32Array {
  const table = new Int32Array(buckets);
  for (let bucket = 0; bucket < buckets; bucket++) table[bucket] = bucket % workers;
  return table;
}
