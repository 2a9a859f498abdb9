/**
 * The README's main job (until the demo cluster exists): one wadi node with several worker
 * threads runs cart and profile sessions for a few hundred simulated users, then reports what it
 * did and stops gracefully.
 */
import { startNode, type WadiNode } from 'wadi';
import { cart, pricing, profile } from './actors.js';

const USERS = Number(process.env.DEMO_USERS ?? 300);
const OPERATIONS_PER_USER = Number(process.env.DEMO_OPS ?? 20);
const WORKERS = Number(process.env.DEMO_WORKERS ?? 4);
const SKUS = ['apple', 'bread', 'cheese', 'dates', 'eggs', 'figs'];

async function simulateUser(node: WadiNode, user: string, random: () => number): Promise<number> {
  const sessionCart = node.ref(cart, `${user}/cart`);
  const sessionProfile = node.ref(profile, `${user}/profile`);
  await sessionProfile.visit(user);
  let calls = 1;
  for (let i = 0; i < OPERATIONS_PER_USER; i++) {
    const sku = SKUS[Math.floor(random() * SKUS.length)]!;
    if (random() < 0.8) await sessionCart.add(sku, 1 + Math.floor(random() * 3));
    else await sessionCart.remove(sku);
    calls++;
  }
  return calls;
}

function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

async function main(): Promise<void> {
  console.log(`wadi demo: starting one node with ${WORKERS} worker threads`);
  const node = await startNode({ workers: WORKERS, actors: [new URL('./actors.js', import.meta.url)] });
  console.log(`  actor types loaded: ${node.actorTypes.join(', ')}; ${node.buckets} buckets`);

  const started = performance.now();
  const users = Array.from({ length: USERS }, (_, i) => `user${i}`);
  const calls = await Promise.all(users.map((user, i) => simulateUser(node, user, seededRandom(i + 1))));
  const seconds = (performance.now() - started) / 1000;
  const total = calls.reduce((sum, n) => sum + n, 0);
  console.log(`  ${USERS} users made ${total} calls in ${seconds.toFixed(2)} s (${Math.round(total / seconds)} calls/s)`);

  const alice = users[0]!;
  const view = await node.ref(cart, `${alice}/cart`).view();
  console.log(`  ${alice}'s cart (worker ${node.locate(cart, `${alice}/cart`)}, same as profile: worker ${node.locate(profile, `${alice}/profile`)}):`, view.items);
  console.log(`  quote from the stateless pricing pool: ${await node.ref(pricing, 'any').quote(view.items)} cents`);

  try {
    await node.ref(cart, `${alice}/cart`).addThenFail('caviar');
  } catch (error) {
    const { name, message, code } = error as Error & { code?: string };
    console.log(`  a failing turn reached the caller as ${name} ${code}: "${message}"`);
  }
  const after = await node.ref(cart, `${alice}/cart`).view();
  console.log(`  ...and was discarded: caviar in cart? ${'caviar' in after.items}; updates still ${after.updates}`);

  const stats = await node.stats();
  for (const worker of stats.workers) {
    console.log(`  worker ${worker.index}: ${worker.activations} sessions active, ${worker.turns} turns, ${worker.failedTurns} failed`);
  }
  await node.stop();
  console.log('  node stopped gracefully');
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
