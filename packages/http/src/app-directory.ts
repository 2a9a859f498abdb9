/**
 * Where each node serves its web app, for the `redirect` policy: a node that does not hold a
 * session answers 307 with the app URL of the node that does.
 *
 * Nodes know each other by node id and cluster URL only, so each node announces its app URL to
 * the cluster's `HttpApps` actor, again every `ANNOUNCE_EVERY_MS` (which also rebuilds the table
 * if the node holding it crashed), and reads the table when it meets a node it does not know.
 */
import type { AnyActorDef, RefOf, RefOptions } from '@wadi/core';
import { HTTP_APPS_ID, HttpApps } from './actors.js';

/** Anything that calls actors in the cluster: a node (`startNode`) or a client (`connect`). */
export interface ActorCaller {
  ref<D extends AnyActorDef>(def: D, id: string, options?: RefOptions): RefOf<D>;
}

const ANNOUNCE_EVERY_MS = 5_000;
/** A node missing from the table is looked up again at most this often. */
const REFRESH_MIN_MS = 500;

export class AppDirectory {
  readonly #caller: ActorCaller;
  readonly #self: { node: string; url: string } | undefined;
  #urls = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #refreshedAt = -Infinity;
  #refreshing: Promise<void> | undefined;

  constructor(caller: ActorCaller, self: { node: string; url: string } | undefined) {
    this.#caller = caller;
    this.#self = self;
    if (self !== undefined) {
      this.#urls.set(self.node, self.url);
      void this.#announce();
      this.#timer = setInterval(() => void this.#announce(), ANNOUNCE_EVERY_MS);
      this.#timer.unref();
    }
  }

  /** The app URL of `node`, or undefined when the table has none. */
  async urlOf(node: string): Promise<string | undefined> {
    const known = this.#urls.get(node);
    if (known !== undefined) return known;
    if (performance.now() - this.#refreshedAt >= REFRESH_MIN_MS) {
      this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = undefined));
    }
    await this.#refreshing;
    return this.#urls.get(node);
  }

  close(): void {
    clearInterval(this.#timer);
  }

  #table(): RefOf<typeof HttpApps> {
    return this.#caller.ref(HttpApps, HTTP_APPS_ID, { timeoutMs: 5_000 });
  }

  async #announce(): Promise<void> {
    const self = this.#self!;
    try {
      this.#install(await this.#table().announce(self.node, self.url));
    } catch {
      // The node is starting or stopping, or the table's node is being replaced: try again soon.
    }
  }

  async #refresh(): Promise<void> {
    this.#refreshedAt = performance.now();
    try {
      this.#install(await this.#table().list());
    } catch {
      // Unknown stays unknown; the caller falls back to proxying.
    }
  }

  #install(entries: [string, string][]): void {
    const urls = new Map(entries);
    if (this.#self !== undefined) urls.set(this.#self.node, this.#self.url);
    this.#urls = urls;
  }
}
