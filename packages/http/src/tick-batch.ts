/**
 * Sends the session calls of all requests that arrive in one event-loop turn together.
 *
 * Each HTTP request runs in its own I/O callback, and a node's thread link flushes its batch when
 * the microtasks of a callback drain, so without this every request's call to its session actor
 * costs one `postMessage` of its own (measured: about 14% of a node's main thread under load).
 * Queued here and sent from one `setImmediate`, the calls of every request read in the same poll
 * phase share one message to the worker. The delay is the rest of the current loop turn.
 *
 * Calls leave in the order they were queued, so a request's final save still goes out before
 * the next request of the same session (which waits for it locally) sends its open.
 */
export class TickBatch {
  #queue: (() => void)[] = [];
  #scheduled = false;

  /** Runs `call` with the rest of this turn's calls; resolves or rejects as its result does. */
  ask<T>(call: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#push(() => {
        try {
          call().then(resolve, reject);
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  /** Sends `call` (a tell) with the rest of this turn's calls; resolves once sent, rejects if sending threw. */
  send(call: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#push(() => {
        try {
          call();
          resolve();
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  #push(run: () => void): void {
    this.#queue.push(run);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#flush);
  }

  readonly #flush = (): void => {
    const queue = this.#queue;
    this.#queue = [];
    this.#scheduled = false;
    for (const run of queue) run();
  };
}
