/**
 * session.evacuate.seconds: how long a node holding SESSIONS small sessions takes from SIGTERM to
 * exit, when it leaves a cluster of three (every node a child process on loopback, sessions on
 * each node's main thread as in every cluster benchmark, `NODE_WORKERS`; SIGTERM is the graceful leave of the `wadi node` CLI: move every session to the other
 * nodes, hand the buckets off, stop). No raw baseline. Issue target: <= 10 s.
 *
 * Each round starts a fresh cluster of three; the leaver (not the coordinator, so the figure is
 * the evacuation and not an election) creates its sessions by calling them itself, `add(1)`
 * each, so they live on it. The clock runs from the signal to the process's exit. The round only
 * counts if the leaver exited with 0 and the two survivors, once they agree on a layout without
 * it, host exactly SESSIONS sessions between them: none lost, none twice.
 *
 * The median over ROUNDS rounds is reported. Every process is SIGKILLed after each round, also
 * on error.
 */
import { ChildNode, NODE_WORKERS, killChildNodes, settled } from '../child-nodes.js';
import { median, result, type Benchmark } from '../harness.js';

const SECRET = 'wadi-bench-evacuate-secret';
const BUCKETS = 1024;
const SESSIONS = 100_000;
const ROUNDS = 3;
/** Longest a leave may take before the round fails (the target is 10 s). */
const LEAVE_MS = 120_000;

async function round(index: number): Promise<number> {
  try {
    const config = { secret: SECRET, workers: NODE_WORKERS, buckets: BUCKETS };
    const first = await ChildNode.spawn('n1', { ...config, seeds: [] });
    const others = await Promise.all([ChildNode.spawn('n2', { ...config, seeds: [first.url] }), ChildNode.spawn('n3', { ...config, seeds: [first.url] })]);
    const nodes = [first, ...others];
    const [status] = await settled(nodes);
    const leaver = nodes.find((node) => node.id !== status!.coordinator)!;
    const survivors = nodes.filter((node) => node !== leaver);
    await leaver.createSessions(`evacuate-${index}-`, SESSIONS, { window: 512, timeoutMs: 120_000 });
    const hosted = (await leaver.status()).sessions.memory;
    if (hosted !== SESSIONS) throw new Error(`the leaver hosts ${hosted} sessions, expected ${SESSIONS}`);

    const start = performance.now();
    leaver.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([
      leaver.exited,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the leaver did not exit within ${LEAVE_MS} ms\n${leaver.tail()}`)), LEAVE_MS))),
    ]).finally(() => clearTimeout(timer));
    const seconds = (performance.now() - start) / 1000;
    if (exit.code !== 0) throw new Error(`the leaver exited with ${exit.signal ?? exit.code}\n${leaver.tail()}`);

    const after = await settled(survivors);
    const total = after.reduce((sum, survivor) => sum + survivor.sessions.memory, 0);
    if (total !== SESSIONS) throw new Error(`the survivors host ${total} sessions after the leave, expected ${SESSIONS}`);
    return seconds;
  } finally {
    await killChildNodes();
  }
}

export const sessionEvacuate: Benchmark = {
  title: 'session evacuation',
  names: ['session.evacuate.seconds'],
  async run() {
    const seconds: number[] = [];
    for (let i = 0; i < ROUNDS; i++) seconds.push(await round(i));
    return [
      result({
        name: 'session.evacuate.seconds',
        value: median(seconds),
        unit: 's',
        better: 'lower',
        target: { on: 'value', op: '<=', threshold: 10 },
        samples: seconds,
      }),
    ];
  },
};
