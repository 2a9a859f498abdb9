/**
 * The demo's node processes: starting them (`demo-node.js`), knowing their URLs, stopping them
 * gracefully (SIGTERM), killing them (SIGKILL), restarting one as a new incarnation from its data
 * directory, and making sure none outlives the demo.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseReady } from './ready.js';

const NODE_ENTRY = new URL('./demo-node.js', import.meta.url);
/** Longest a node may take to start. */
const START_TIMEOUT_MS = 60_000;
/** Longest a graceful leave may take before the node is killed. */
const STOP_TIMEOUT_MS = 90_000;

export type ProcessState = 'starting' | 'running' | 'stopping' | 'stopped' | 'killed' | 'crashed';

export interface NodeProcess {
  id: string;
  /** Position in start order, from 0: decides the node's colour. */
  index: number;
  state: ProcessState;
  pid: number | undefined;
  incarnation: number | undefined;
  ws: string | undefined;
  status: string | undefined;
  app: string | undefined;
  exitCode: number | null;
  /** The ports it asked for, reused by a restart. */
  ports: { ws: number; status: number; app: number };
  /** The last lines it printed, for error messages. */
  output: string[];
}

export interface SupervisorOptions {
  dataRoot: string;
  env: Record<string, string>;
  workers: number;
  routing: string;
  /** Preferred first ports (the next node gets the next port); 0: any free port. */
  basePorts: { ws: number; status: number; app: number };
}

/** Events: 'change' (node), 'log' (text). */
export class Supervisor extends EventEmitter {
  readonly nodes: NodeProcess[] = [];
  readonly #options: SupervisorOptions;
  readonly #children = new Map<string, ChildProcess>();
  #shuttingDown = false;

  constructor(options: SupervisorOptions) {
    super();
    this.#options = options;
    // Last resort: never leave a node behind, even if the demo itself dies of an exception.
    process.once('exit', () => {
      for (const child of this.#children.values()) child.kill('SIGKILL');
    });
  }

  /** Nodes that serve the app now (for the load generator and the app links). */
  serving(): NodeProcess[] {
    return this.nodes.filter((node) => node.state === 'running');
  }

  /** Starts a new node (`n1`, `n2`, ...) and resolves once it is ready. */
  async add(): Promise<NodeProcess> {
    const index = this.nodes.length;
    const base = this.#options.basePorts;
    const ports = {
      ws: await portOrAny(base.ws === 0 ? 0 : base.ws + index),
      status: await portOrAny(base.status === 0 ? 0 : base.status + index),
      app: await portOrAny(base.app === 0 ? 0 : base.app + index),
    };
    const node: NodeProcess = { id: `n${index + 1}`, index, state: 'starting', pid: undefined, incarnation: undefined, ws: undefined, status: undefined, app: undefined, exitCode: null, ports, output: [] };
    this.nodes.push(node);
    await this.#launch(node);
    return node;
  }

  /** Starts a stopped or killed node again, from its data directory: a new incarnation. */
  async restart(id: string): Promise<NodeProcess> {
    const node = this.#get(id);
    if (node.state === 'starting' || node.state === 'running' || node.state === 'stopping') throw new Error(`${id} is ${node.state}`);
    node.ports = {
      ws: await portOrAny(node.ports.ws),
      status: await portOrAny(node.ports.status),
      app: await portOrAny(node.ports.app),
    };
    await this.#launch(node);
    return node;
  }

  /** Graceful leave (SIGTERM); resolves when the process has exited. */
  async stop(id: string): Promise<void> {
    const node = this.#get(id);
    const child = this.#children.get(id);
    if (child === undefined || node.state !== 'running') throw new Error(`${id} is not running (${node.state})`);
    this.#set(node, 'stopping');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited(child);
    clearTimeout(timer);
  }

  /** SIGKILL: a crash, as far as the cluster can tell. */
  async kill(id: string): Promise<void> {
    const node = this.#get(id);
    const child = this.#children.get(id);
    if (child === undefined) throw new Error(`${id} is not running (${node.state})`);
    this.#set(node, 'killed');
    child.kill('SIGKILL');
    await exited(child);
  }

  /**
   * Stops every node gracefully, newest first, one after another: each hands its buckets and
   * sessions to the nodes still there. (Members that all leave at once have nobody left to
   * coordinate their leave, so they would wait for their leave timeout.) A node that takes longer
   * than `timeoutMs` is killed.
   */
  async shutdown(timeoutMs = STOP_TIMEOUT_MS): Promise<void> {
    this.#shuttingDown = true;
    for (const node of [...this.nodes].reverse()) {
      const child = this.#children.get(node.id);
      if (child === undefined) continue;
      this.#set(node, 'stopping');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited(child);
      clearTimeout(timer);
    }
  }

  /** SIGKILLs every node now (a second Ctrl-C). */
  killAll(): void {
    this.#shuttingDown = true;
    for (const child of this.#children.values()) child.kill('SIGKILL');
  }

  async #launch(node: NodeProcess): Promise<void> {
    const seed = this.nodes.find((other) => other !== node && other.state === 'running');
    const dataDir = join(this.#options.dataRoot, node.id);
    mkdirSync(dataDir, { recursive: true });
    const args = [
      NODE_ENTRY.pathname,
      '--id', node.id,
      '--port', String(node.ports.ws),
      '--http-port', String(node.ports.status),
      '--app-port', String(node.ports.app),
      '--data', dataDir,
      '--shared', join(this.#options.dataRoot, 'shared'),
      '--workers', String(this.#options.workers),
      '--routing', this.#options.routing,
      ...(seed?.ws === undefined ? [] : ['--seeds', this.serving().map((other) => other.ws).join(',')]),
    ];
    // Its own process group: a Ctrl-C in the terminal reaches only the demo, which then stops
    // the nodes one way (SIGTERM), instead of every node getting two signals.
    const child = spawn(process.execPath, args, { env: { ...process.env, ...this.#options.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.#children.set(node.id, child);
    node.pid = child.pid;
    node.exitCode = null;
    node.output = [];
    this.#set(node, 'starting');
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${node.id} did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      let buffered = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          this.#remember(node, line);
          const info = parseReady(line);
          if (info !== undefined) {
            Object.assign(node, { incarnation: info.incarnation, ws: info.ws, status: info.status, app: info.app });
            node.ports = { ws: port(info.ws), status: port(info.status), app: port(info.app) };
            clearTimeout(timer);
            this.#set(node, 'running');
            resolve();
          }
        }
      });
      child.stderr!.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString().split('\n')) if (line.length > 0) this.#remember(node, line);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        this.#children.delete(node.id);
        node.exitCode = code;
        node.pid = undefined;
        if (node.state !== 'killed') this.#set(node, node.state === 'stopping' && code === 0 ? 'stopped' : 'crashed');
        this.emit('log', `${node.id} exited (${signal ?? `code ${code}`})`);
        reject(new Error(`${node.id} exited (${signal ?? code}) before it was ready:\n${node.output.slice(-20).join('\n')}`));
      });
    });
    try {
      await ready;
    } catch (error) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      throw error;
    }
    if (this.#shuttingDown) child.kill('SIGTERM');
  }

  #remember(node: NodeProcess, line: string): void {
    node.output.push(line);
    if (node.output.length > 200) node.output.splice(0, node.output.length - 200);
    if (parseReady(line) === undefined) this.emit('log', `${node.id}: ${line}`);
  }

  #set(node: NodeProcess, state: ProcessState): void {
    node.state = state;
    this.emit('change', node);
  }

  #get(id: string): NodeProcess {
    const node = this.nodes.find((candidate) => candidate.id === id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

function port(url: string): number {
  return Number(new URL(url).port);
}

/** `preferred` if it is free on loopback now, else 0 (the node picks a free one). */
export function portOrAny(preferred: number): Promise<number> {
  if (preferred === 0) return Promise.resolve(0);
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(0));
    probe.listen(preferred, '127.0.0.1', () => probe.close(() => resolve(preferred)));
  });
}
