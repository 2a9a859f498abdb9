#!/usr/bin/env node
/**
 * `pnpm demo:load`: drives simulated shoppers against the demo cluster and prints a progress line
 * every second (requests/s, p50/p95/p99 latency, failures, mismatches). Exits 0 when no request
 * failed, 1 otherwise.
 *
 *   node apps/demo/dist/load-main.js [--users 50] [--seconds 30] [--think-ms 0]
 *        [--targets http://127.0.0.1:3000/api/targets | --urls http://127.0.0.1:3001,http://127.0.0.1:3002]
 *        [--json]
 *
 * `--targets` (the default) asks the demo's dashboard which nodes serve, every half second, so
 * nodes added or stopped during the run are followed; `--urls` is a fixed list.
 */
import { parseCommandLine } from './command-line.js';
import { TargetList } from './http-user.js';
import { formatProgress, runLoad } from './load.js';

const REFRESH_MS = 500;

const USAGE = 'usage: load-main [--users N>=1] [--seconds S>=0 (0: until Ctrl-C)] [--think-ms MS] [--targets URL | --urls URL,URL] [--json]';

const { values } = parseCommandLine({
  options: {
    users: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '30' },
    'think-ms': { type: 'string', default: '0' },
    targets: { type: 'string', default: 'http://127.0.0.1:3000/api/targets' },
    urls: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
}, USAGE);

const users = Number(values.users);
const seconds = Number(values.seconds);
const thinkMs = Number(values['think-ms']);
if (!Number.isInteger(users) || users < 1 || !(seconds >= 0) || !(thinkMs >= 0)) {
  console.error(USAGE);
  process.exit(2);
}

const targets = new TargetList();
let refresher: NodeJS.Timeout | undefined;
if (values.urls !== undefined) {
  targets.set(values.urls.split(',').map((url) => url.trim().replace(/\/$/, '')).filter((url) => url.length > 0));
} else {
  const source = values.targets!;
  const refresh = async (): Promise<void> => {
    try {
      const response = await fetch(source, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) targets.set((await response.json()) as string[]);
    } catch {
      // Keep the last list; the dashboard may be busy.
    }
  };
  await refresh();
  if (targets.urls.length === 0) {
    console.error(`load: no node to send to: ${source} listed none (is the demo running?)`);
    process.exit(2);
  }
  refresher = setInterval(() => void refresh(), REFRESH_MS);
}

const abort = new AbortController();
process.once('SIGINT', () => abort.abort());
process.once('SIGTERM', () => abort.abort());
const interactive = !values.json && process.stdout.isTTY === true;
if (!values.json) console.log(`load: ${users} shoppers against ${targets.urls.join(', ')}${seconds > 0 ? ` for ${seconds} s` : ' until Ctrl-C'}`);
const final = await runLoad({
  users,
  seconds,
  thinkMs,
  targets,
  signal: abort.signal,
  onProgress: (progress) => {
    if (values.json) console.log(JSON.stringify(progress));
    else if (interactive && !progress.done) process.stdout.write(`\r${formatProgress(progress)}`);
    else if (!progress.done) console.log(formatProgress(progress));
  },
});
clearInterval(refresher);
if (!values.json) {
  if (interactive) process.stdout.write('\n');
  console.log(`load: done. ${formatProgress(final)}`);
  if (final.failures > 0) console.log(`load: failures by cause: ${JSON.stringify(final.errors)}`);
}
process.exit(final.failures === 0 ? 0 : 1);
