/**
 * The demo (`apps/demo/dist/main.js`) as a real process for the tests: started on free ports,
 * its printed URLs, and a bounded stop (SIGINT; SIGKILL for anything still running after 40 s,
 * so no process outlives a test).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const DEMO_MAIN = fileURLToPath(new URL('../apps/demo/dist/main.js', import.meta.url));
const URLS_PREFIX = 'WADI_DEMO_URLS ';
const STOP_TIMEOUT_MS = 40_000;

export interface DemoProcess {
  child: ChildProcess;
  dashboard: string;
  shops: string[];
  output(): string;
  /** Node pids seen so far (add more with `track`); all are SIGKILLed if the demo hangs on stop. */
  track(pids: number[]): void;
  /** SIGINT, then waits (bounded) for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startDemo(env: Record<string, string> = {}): Promise<DemoProcess> {
  const child = spawn(process.execPath, [DEMO_MAIN], { env: { ...process.env, DEMO_ANY_PORTS: '1', DEMO_WORKERS: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const pids = new Set<number>();
  const urls = await new Promise<{ dashboard: string; shops: string[] }>((resolve, reject) => {
    const look = (): void => {
      const line = output.split('\n').find((candidate) => candidate.startsWith(URLS_PREFIX));
      if (line !== undefined) resolve(JSON.parse(line.slice(URLS_PREFIX.length)) as { dashboard: string; shops: string[] });
    };
    child.stdout!.on('data', look);
    void exited.then((code) => reject(new Error(`the demo exited (${code}) before printing its URLs:\n${output}`)));
  });
  return {
    child,
    ...urls,
    output: () => output,
    track: (more) => more.forEach((pid) => pids.add(pid)),
    stop: async () => {
      child.kill('SIGINT');
      const timer = setTimeout(() => {
        for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
        child.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
