/**
 * The channel between a node's main thread and a session runtime that runs on the main thread as
 * well (`workers: 0`). It stands in for a worker's MessagePort: a message is delivered on a later
 * turn of the event loop, in order, never inside the sender's call, as if it had crossed a thread,
 * but without waking one. That wake-up is what a node with no worker threads saves: on a machine
 * whose cores several nodes already share, a worker thread only adds a hop to every call.
 */
export class InlineEnd {
  #peer: InlineEnd | undefined;
  #listener: ((message: unknown) => void) | undefined;
  #queue: unknown[] = [];
  #scheduled = false;
  #closed = false;

  /** The buffers of a transfer list are the sender's to give away already: nothing to detach. */
  postMessage(message: unknown): void {
    const peer = this.#peer;
    if (peer !== undefined) peer.#enqueue(message);
  }

  on(event: 'message', listener: (message: unknown) => void): this {
    if (event !== 'message') throw new TypeError(`an inline channel has no '${String(event)}' event`);
    this.#listener = listener;
    return this;
  }

  /** Closes both ends: what is still queued is not delivered. */
  close(): void {
    for (const end of [this, this.#peer]) {
      if (end === undefined) continue;
      end.#closed = true;
      end.#queue = [];
      end.#listener = undefined;
    }
  }

  #enqueue(message: unknown): void {
    if (this.#closed) return;
    this.#queue.push(message);
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(this.#deliver);
  }

  readonly #deliver = (): void => {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = [];
    for (const message of queue) this.#listener?.(message);
  };

  /** A connected pair: what one end posts, the other end's listener receives. */
  static pair(): [InlineEnd, InlineEnd] {
    const a = new InlineEnd();
    const b = new InlineEnd();
    a.#peer = b;
    b.#peer = a;
    return [a, b];
  }
}
