/**
 * The dashboard's "start load" button: runs the load generator (`load-main.js --json`) as a child
 * process against the nodes the dashboard lists, and keeps its latest progress for the page.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { LoadProgress } from './load.js';

const LOAD_ENTRY = new URL('./load-main.js', import.meta.url);

export interface LoadView {
  running: boolean;
  users: number;
  seconds: number;
  progress: LoadProgress | null;
}

/** Events: 'started' (users, seconds), 'finished' (LoadProgress | null). */
export class LoadRunner extends EventEmitter {
  readonly #targetsUrl: string;
  #child: ChildProcess | undefined;
  #view: LoadView = { running: false, users: 0, seconds: 0, progress: null };

  constructor(targetsUrl: string) {
    super();
    this.#targetsUrl = targetsUrl;
    process.once('exit', () => this.#child?.kill('SIGKILL'));
  }

  view(): LoadView {
    return this.#view;
  }

  start(users: number, seconds: number, thinkMs: number): void {
    if (this.#child !== undefined) throw new Error('the load generator is already running');
    const args = [LOAD_ENTRY.pathname, '--json', '--users', String(users), '--seconds', String(seconds), '--think-ms', String(thinkMs), '--targets', this.#targetsUrl];
    // Its own process group, like the nodes: only the demo decides when it stops.
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.#child = child;
    this.#view = { running: true, users, seconds, progress: null };
    this.emit('started', users, seconds);
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          this.#view = { ...this.#view, progress: JSON.parse(line) as LoadProgress };
        } catch {
          // Not a progress line.
        }
      }
    });
    child.stderr!.resume();
    child.once('exit', () => {
      this.#child = undefined;
      this.#view = { ...this.#view, running: false };
      this.emit('finished', this.#view.progress);
    });
  }

  /** Stops the run (its final report still arrives); resolves when the process is gone. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
    clearTimeout(timer);
  }
}
