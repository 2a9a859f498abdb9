/**
 * A link carries envelopes from this thread to one other runtime over a MessagePort (another
 * thread) or an inline channel (a runtime on this thread, `workers: 0`).
 *
 * Envelopes are copied one by one as they are sent (so an unencodable argument fails its own
 * ask, at once) and appended to a batch; the batch goes out when the current microtask queue
 * drains, or sooner when it is large. Across threads the copy is the envelope's encoding and the
 * batch one transferred buffer. On the same thread (`sameThread`) the copy is a clone, which
 * refuses and rebuilds exactly what the codec does (core's clone.ts) without the trip through
 * bytes, and the batch an array. While the far thread is being replaced the link holds batches,
 * up to a byte budget past which sends fail with `Overloaded`.
 */
import type { MessagePort, Worker } from 'node:worker_threads';
import { DEFAULT_MAX_DECODE_BYTES, InvalidArgument, Overloaded, Unavailable, cloneValue, decodeMany, encodeView } from '@wadi/core';
import type { ThreadMessage } from './protocol.js';

export type PortLike = Pick<MessagePort, 'postMessage'> | Pick<Worker, 'postMessage'>;

const INITIAL_BATCH_BYTES = 16 * 1024;
/** A batch this large is sent at once instead of waiting for the end of the tick. */
const FLUSH_AT_BYTES = 1024 * 1024;
/**
 * A batch with this many envelopes is sent at once too. Without it a burst goes out as one huge
 * batch and the two threads take turns being idle; smaller batches let the far thread start
 * working while this one is still producing (measured: pipelined asks from about 1.1 to 1.9 M/s).
 */
const FLUSH_AT_ENVELOPES = 64;

/**
 * The largest envelope a link sends: its batch (at most this plus a batch just under
 * `FLUSH_AT_BYTES`) must stay within what the far thread decodes, or the whole batch, other
 * callers' messages included, would be refused there.
 */
export const MAX_ENVELOPE_BYTES = DEFAULT_MAX_DECODE_BYTES - FLUSH_AT_BYTES;

const resolved = Promise.resolve();

export class PortLink {
  #port: PortLike | undefined;
  #batch = new Uint8Array(INITIAL_BATCH_BYTES);
  #offset = 0;
  /** The batch of a same-thread link: cloned envelopes. */
  #clones: ThreadMessage[] = [];
  #scheduled = false;
  #held: (Uint8Array | ThreadMessage[])[] = [];
  #heldBytes = 0;
  #closed = false;
  sentBatches = 0;
  sentEnvelopes = 0;
  #batchEnvelopes = 0;

  constructor(
    readonly name: string,
    port: PortLike | undefined,
    private readonly maxHeldBytes: number,
    /** The far runtime runs on this thread: envelopes are cloned, not encoded. */
    readonly sameThread = false,
  ) {
    this.#port = port;
  }

  get up(): boolean {
    return this.#port !== undefined;
  }

  send(envelope: ThreadMessage): void {
    if (this.#closed) throw new Unavailable(`${this.name} is closed`);
    if (this.sameThread) return this.#sendClone(envelope);
    if (this.#port === undefined && this.#heldBytes + this.#offset > this.maxHeldBytes) {
      throw new Overloaded(`${this.name} is restarting and already holds ${this.#heldBytes} bytes`);
    }
    const bytes = encodeView(envelope);
    if (bytes.length > MAX_ENVELOPE_BYTES) {
      throw new InvalidArgument(`a message of ${bytes.length} bytes is larger than a thread link carries (${MAX_ENVELOPE_BYTES} bytes)`);
    }
    const end = this.#offset + bytes.length;
    if (end > this.#batch.length) this.#grow(end);
    this.#batch.set(bytes, this.#offset);
    this.#offset = end;
    if (++this.#batchEnvelopes >= FLUSH_AT_ENVELOPES || end >= FLUSH_AT_BYTES) this.flush();
    else this.#flushSoon();
  }

  /**
   * No byte budget and no size limit: a same-thread runtime is never replaced (it goes only with
   * this thread), and no decoder reads the batch.
   */
  #sendClone(envelope: ThreadMessage): void {
    this.#clones.push(cloneValue(envelope));
    if (++this.#batchEnvelopes >= FLUSH_AT_ENVELOPES) this.flush();
    else this.#flushSoon();
  }

  #flushSoon(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    void resolved.then(this.flush);
  }

  readonly flush = (): void => {
    this.#scheduled = false;
    if (this.sameThread) return this.#flushClones();
    if (this.#offset === 0) return;
    const batch = this.#batch.slice(0, this.#offset);
    this.#offset = 0;
    this.sentEnvelopes += this.#batchEnvelopes;
    this.#batchEnvelopes = 0;
    if (this.#port === undefined) {
      this.#held.push(batch);
      this.#heldBytes += batch.byteLength;
      return;
    }
    this.sentBatches++;
    post(this.#port, batch);
  };

  #flushClones(): void {
    if (this.#clones.length === 0) return;
    const batch = this.#clones;
    this.#clones = [];
    this.sentEnvelopes += this.#batchEnvelopes;
    this.#batchEnvelopes = 0;
    if (this.#port === undefined) {
      this.#held.push(batch);
      return;
    }
    this.sentBatches++;
    post(this.#port, batch);
  }

  /** The far thread is gone: hold what is sent until `attach`. */
  detach(): void {
    this.flush();
    this.#port = undefined;
  }

  /** The far thread is (back) up: deliver what was held, in order. */
  attach(port: PortLike): void {
    this.#port = port;
    for (const batch of this.#held) post(port, batch);
    this.#held = [];
    this.#heldBytes = 0;
  }

  close(): void {
    this.flush();
    this.#closed = true;
    this.#port = undefined;
    this.#held = [];
    this.#clones = [];
  }

  #grow(needed: number): void {
    let size = this.#batch.length * 2;
    while (size < needed) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.#batch.subarray(0, this.#offset));
    this.#batch = bigger;
  }
}

function post(port: PortLike, batch: Uint8Array | ThreadMessage[]): void {
  if (batch instanceof Uint8Array) port.postMessage(batch, [batch.buffer as ArrayBuffer]);
  else port.postMessage(batch);
}

/**
 * Decodes one received batch into envelopes (a same-thread link's batch is its envelopes
 * already); a batch that does not decode is reported, not thrown.
 */
export function receiveBatch(batch: unknown, deliver: (message: ThreadMessage) => void, onError: (error: unknown) => void): void {
  let envelopes: unknown[];
  try {
    envelopes = Array.isArray(batch) ? batch : decodeMany(batch as Uint8Array);
  } catch (error) {
    onError(error);
    return;
  }
  for (let i = 0; i < envelopes.length; i++) deliver(envelopes[i] as ThreadMessage);
}
