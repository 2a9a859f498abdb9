/**
 * Raw baselines: what the same work costs without wadi, measured in the same run as the figure
 * compared to it. Each is an `Op` (see harness.ts), so a benchmark can time it side by side with
 * its figure: `measureAll({ figure, baseline: echo.pipelined() })`.
 *
 * - `awaitedAsyncCalls`: `await f(x)` in a loop, the floor for an in-thread ask.
 * - `EchoWorker`: a worker thread that posts every message straight back, for the floors of
 *   cross-thread asks: `pipelined(window)` (throughput, unbatched, a window of messages in
 *   flight) and `roundTrips()` (one message at a time, awaited: latency).
 * - `WsEcho`: the same two ops over a WebSocket to another process (a `ws` echo server on
 *   loopback), the floors of asks between nodes: one WebSocket message per message each way,
 *   encoded with wadi's codec, no batching.
 * - `lmdbBatchedPuts`: lmdb-js `put`s of ready values, a batch per event turn (one transaction),
 *   awaiting the commit and the flush to disk: the floor of writing sessions to the disk tier.
 * - `pgBatchedInserts`: multi-row INSERTs of ready rows through `pg`, one statement per batch:
 *   the floor of writing sessions to a PostgreSQL shared tier.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { decode, encode } from '@wadi/core';
import type { Database, Key } from 'lmdb';
import type pg from 'pg';
import { measure, type MeasureOptions, type Op, type Timing } from './harness.js';
import { loadWs, type WsSocket } from './ws.js';

/** Names of the raw figures, as they appear in `baseline` fields and rows. */
export const RAW_AWAITED_CALL = 'raw.awaitedAsyncCall';
export const RAW_POSTMESSAGE_PIPELINED = 'raw.postMessage.pipelined';
export const RAW_POSTMESSAGE_LATENCY = 'raw.postMessage.latency';
export const RAW_WS_PIPELINED = 'raw.ws.pipelined';
export const RAW_WS_LATENCY = 'raw.ws.latency';
export const RAW_LMDB_BATCHED_PUT = 'raw.lmdb.batchedPut';
export const RAW_PG_BATCHED_INSERT = 'raw.pg.batchedInsert';

/** Messages in flight for the pipelined echo unless told otherwise. */
export const DEFAULT_ECHO_WINDOW = 1000;

/** Results are stored here so the optimiser cannot drop the work that produced them. */
export let sink: unknown;

const cell = { count: 0 };

/** The same work as the bench's counter actor `add(state, x)`, as a plain async function. */
async function add(x: number): Promise<number> {
  cell.count += x;
  return cell.count;
}

/** `n` sequential awaited async function calls: `await f(x)` in a loop. */
export const awaitedAsyncCalls: Op = async (n) => {
  let last = 0;
  for (let i = 0; i < n; i++) last = await add(1);
  sink = last;
};

/** A small message like an ask's payload. */
export interface EchoMessage {
  id: number;
  x: number;
}

/** A worker thread that echoes each message back individually. Start it, use its ops, close it. */
export class EchoWorker {
  readonly #worker: Worker;
  /** Receives each echoed message while an op runs. */
  #onReply: ((message: EchoMessage) => void) | undefined;
  #onFailure: ((error: Error) => void) | undefined;
  #closing = false;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.on('message', (message: EchoMessage) => {
      const onReply = this.#onReply;
      if (onReply === undefined) this.#fail(new Error(`echo worker: unexpected message ${JSON.stringify(message)}`));
      else onReply(message);
    });
    worker.on('error', (error) => this.#fail(error));
    worker.on('exit', (code) => {
      if (!this.#closing) this.#fail(new Error(`echo worker exited unexpectedly with code ${code}`));
    });
  }

  static async start(): Promise<EchoWorker> {
    const worker = new Worker(new URL('./workers/echo-worker.js', import.meta.url));
    const echo = new EchoWorker(worker);
    await new Promise<void>((resolve, reject) => {
      worker.once('online', resolve);
      worker.once('error', reject);
    });
    // One round trip, so the worker's listener is installed before anything is timed.
    await echo.roundTrips()(1);
    return echo;
  }

  /**
   * `n` messages posted one `postMessage` each, keeping `window` in flight: a new one goes out as
   * each echo comes back. Resolves when all `n` echoes have arrived.
   */
  pipelined(window = DEFAULT_ECHO_WINDOW): Op {
    return (n) =>
      new Promise<void>((resolve, reject) => {
        if (n <= 0) return resolve();
        const worker = this.#worker;
        let sent = 0;
        let received = 0;
        this.#onFailure = reject;
        this.#onReply = (message) => {
          received++;
          if (sent < n) {
            worker.postMessage({ id: sent, x: sent } satisfies EchoMessage);
            sent++;
          } else if (received === n) {
            sink = message;
            this.#onReply = undefined;
            this.#onFailure = undefined;
            resolve();
          }
        };
        const first = Math.min(window, n);
        for (; sent < first; sent++) worker.postMessage({ id: sent, x: sent } satisfies EchoMessage);
      });
  }

  /** `n` round trips one at a time: post, await the echo, repeat. */
  roundTrips(): Op {
    return async (n) => {
      let last: EchoMessage | undefined;
      for (let i = 0; i < n; i++) last = await this.echo({ id: i, x: i });
      sink = last;
    };
  }

  /** One round trip. */
  echo(message: EchoMessage): Promise<EchoMessage> {
    return new Promise<EchoMessage>((resolve, reject) => {
      this.#onFailure = reject;
      this.#onReply = (reply) => {
        this.#onReply = undefined;
        this.#onFailure = undefined;
        resolve(reply);
      };
      this.#worker.postMessage(message);
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    await this.#worker.terminate();
  }

  #fail(error: Error): void {
    const onFailure = this.#onFailure;
    this.#onReply = undefined;
    this.#onFailure = undefined;
    if (onFailure !== undefined) onFailure(error);
    else console.error(error);
  }
}

/** Runs `use` with a started echo worker and closes it afterwards. */
export async function withEchoWorker<T>(use: (echo: EchoWorker) => Promise<T>): Promise<T> {
  const echo = await EchoWorker.start();
  try {
    return await use(echo);
  } finally {
    await echo.close();
  }
}

/** Raw pipelined echo throughput on its own (messages/s is `opsPerSec`). */
export function measurePostMessagePipelined(options: MeasureOptions & { window?: number } = {}): Promise<Timing> {
  return withEchoWorker((echo) => measure(echo.pipelined(options.window), options));
}

/** Raw one-at-a-time round trip on its own (microseconds per round trip is `usPerOp`). */
export function measurePostMessageLatency(options: MeasureOptions = {}): Promise<Timing> {
  return withEchoWorker((echo) => measure(echo.roundTrips(), options));
}

/**
 * A WebSocket to an echo server in a child process (children/ws-echo.ts), which decodes each
 * message and sends it back in a WebSocket message of its own. Start it, use its ops, close it.
 */
export class WsEcho {
  readonly #child: ChildProcess;
  readonly #socket: WsSocket;
  readonly #exited: Promise<void>;
  #onReply: ((message: EchoMessage) => void) | undefined;
  #onFailure: ((error: Error) => void) | undefined;
  #closing = false;

  private constructor(child: ChildProcess, socket: WsSocket, exited: Promise<void>) {
    this.#child = child;
    this.#socket = socket;
    this.#exited = exited;
    socket.on('message', (data) => {
      const message = decode(data as Uint8Array) as EchoMessage;
      const onReply = this.#onReply;
      if (onReply === undefined) this.#fail(new Error(`ws echo: unexpected message ${JSON.stringify(message)}`));
      else onReply(message);
    });
    socket.on('error', (error) => this.#fail(error));
    socket.on('close', (code) => {
      if (!this.#closing) this.#fail(new Error(`ws echo: the connection closed unexpectedly (${code})`));
    });
    child.once('exit', (code, signal) => {
      if (!this.#closing) this.#fail(new Error(`ws echo process exited unexpectedly (${signal ?? code})`));
    });
  }

  static async start(): Promise<WsEcho> {
    const child = fork(new URL('./children/ws-echo.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        child.once('message', (message: { port: number }) => resolve(message.port));
        child.once('error', reject);
        child.once('exit', (code) => reject(new Error(`ws echo process exited with ${code} before listening`)));
      });
      const { WebSocket } = loadWs();
      const socket = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
      await new Promise<void>((resolve, reject) => {
        socket.once('open', resolve);
        socket.once('error', reject);
      });
      const echo = new WsEcho(child, socket, exited);
      // One round trip, so both ends are ready before anything is timed.
      await echo.roundTrips()(1);
      return echo;
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    }
  }

  /**
   * `n` messages sent one WebSocket message each, keeping `window` in flight: a new one goes out
   * as each echo comes back. Resolves when all `n` echoes have arrived.
   */
  pipelined(window = DEFAULT_ECHO_WINDOW): Op {
    return (n) =>
      new Promise<void>((resolve, reject) => {
        if (n <= 0) return resolve();
        let sent = 0;
        let received = 0;
        this.#onFailure = reject;
        this.#onReply = (message) => {
          received++;
          if (sent < n) {
            this.#send({ id: sent, x: sent });
            sent++;
          } else if (received === n) {
            sink = message;
            this.#onReply = undefined;
            this.#onFailure = undefined;
            resolve();
          }
        };
        const first = Math.min(window, n);
        for (; sent < first; sent++) this.#send({ id: sent, x: sent });
      });
  }

  /** `n` round trips one at a time: send, await the echo, repeat. */
  roundTrips(): Op {
    return async (n) => {
      let last: EchoMessage | undefined;
      for (let i = 0; i < n; i++) last = await this.echo({ id: i, x: i });
      sink = last;
    };
  }

  /** One round trip. */
  echo(message: EchoMessage): Promise<EchoMessage> {
    return new Promise<EchoMessage>((resolve, reject) => {
      this.#onFailure = reject;
      this.#onReply = (reply) => {
        this.#onReply = undefined;
        this.#onFailure = undefined;
        resolve(reply);
      };
      this.#send(message);
    });
  }

  /** Closes the socket and kills the echo process (SIGKILL: it holds nothing worth a clean exit). */
  async close(): Promise<void> {
    this.#closing = true;
    this.#socket.terminate();
    this.#child.kill('SIGKILL');
    await this.#exited;
  }

  #send(message: EchoMessage): void {
    this.#socket.send(encode(message), { binary: true });
  }

  #fail(error: Error): void {
    const onFailure = this.#onFailure;
    this.#onReply = undefined;
    this.#onFailure = undefined;
    if (onFailure !== undefined) onFailure(error);
    else console.error(error);
  }
}

/** Runs `use` with a started WebSocket echo process and closes it afterwards. */
export async function withWsEcho<T>(use: (echo: WsEcho) => Promise<T>): Promise<T> {
  const echo = await WsEcho.start();
  try {
    return await use(echo);
  } finally {
    await echo.close();
  }
}

/**
 * The `serial`-th distinct session id, in an order unrelated to key order (a bijective scramble
 * of the counter), as sessions reach a store in the order they went idle.
 */
export function scrambledId(prefix: string, serial: number): string {
  return `${prefix}-${(Math.imul(serial, 0x9e3779b1) >>> 0).toString(36)}`;
}

/** `n` fresh values put into `db`, `batch` per transaction, each batch awaited until flushed. */
export function lmdbBatchedPuts(db: Database<Buffer, Key>, value: Uint8Array, batch: number): Op {
  const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  let serial = 0;
  return async (n) => {
    for (let done = 0; done < n; done += batch) {
      const size = Math.min(batch, n - done);
      let last: Promise<boolean> | undefined;
      for (let i = 0; i < size; i++) last = db.put(['cart', scrambledId('raw', serial++)], bytes);
      await last;
      await db.flushed;
    }
  };
}

/** The columns of a session row, as the PostgreSQL tier stores them. */
export const PG_SESSION_COLUMNS = '(type, id, bucket, version, epoch, state, updated_at, checksum)';

/**
 * `n` fresh rows inserted into `table` (which has PG_SESSION_COLUMNS), `batch` rows per
 * multi-row INSERT statement, one statement at a time.
 */
export function pgBatchedInserts(pool: pg.Pool, table: string, state: Uint8Array, batch: number): Op {
  const bytes = Buffer.from(state.buffer, state.byteOffset, state.byteLength);
  const statements = new Map<number, string>();
  const statement = (rows: number): string => {
    let text = statements.get(rows);
    if (text === undefined) {
      const values = Array.from({ length: rows }, (_, r) => `(${Array.from({ length: 8 }, (_, c) => `$${r * 8 + c + 1}`).join(', ')})`);
      text = `INSERT INTO ${table} ${PG_SESSION_COLUMNS} VALUES ${values.join(', ')}`;
      statements.set(rows, text);
    }
    return text;
  };
  let serial = 0;
  return async (n) => {
    for (let done = 0; done < n; done += batch) {
      const size = Math.min(batch, n - done);
      const params: unknown[] = [];
      for (let i = 0; i < size; i++, serial++) params.push('cart', scrambledId('raw', serial), serial % 1024, 1, 1, bytes, Date.now(), 0);
      await pool.query(statement(size), params);
    }
  };
}
