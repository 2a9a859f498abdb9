/**
 * A node with no worker threads (`workers: 0`): its one session runtime runs on the main thread,
 * beside the sockets, and behaves like a worker's: calls whose values are copies (cloned, not
 * encoded, yet refused and rebuilt as across a thread), calls between actors, per-sender order,
 * timers, idle deactivation, the disk tier, the stateless pool, a graceful stop that drains, and a
 * process that ends by itself once the node stopped (the runtime leaves no timer or port behind).
 * Clusters of such nodes run the cluster routing suite (session-routing.test.ts).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { NotSerializable, Stopped } from '@wadi/core';
import { startNode, type WadiNode } from '@wadi/node';
import { Compute, Counter, Relay, Sleepy, Slow, Ticker } from './fixtures/actors.mjs';
import { ACTORS, eventually, rejection } from './helpers.js';

let node: WadiNode | undefined;
const dirs: string[] = [];

afterEach(async () => {
  await node?.stop();
  node = undefined;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('a node with workers: 0', () => {
  it('runs its sessions on the main thread, one runtime, every call answered', async () => {
    const n = (node = await startNode({ workers: 0, actors: [ACTORS] }));
    expect(n.workers).toBe(1);
    expect(await n.ref(Counter, 'a').thread()).toBe(threadId);
    expect(await Promise.all(Array.from({ length: 500 }, (_, i) => n.ref(Counter, `c-${i % 50}`).add(1)))).toHaveLength(500);
    for (let i = 0; i < 50; i++) expect(await n.ref(Counter, `c-${i}`).get()).toBe(10);
    const stats = await n.stats();
    expect(stats.workers).toHaveLength(1);
    expect(stats.workers[0]).toMatchObject({ state: 'up', activations: 51, restarts: 0 });
  });

  it('copies what passes between the main thread and the runtime, refusing what a thread could not carry', async () => {
    const n = (node = await startNode({ workers: 0, actors: [ACTORS] }));
    const ref = n.ref(Counter, 'copies');
    // Arguments and replies are copies: neither side sees the other's later changes.
    const item = { tags: ['a'] };
    await ref.append(item);
    item.tags.push('changed by the caller');
    const items = (await ref.items()) as { tags: string[] }[];
    expect(items).toEqual([{ tags: ['a'] }]);
    items[0]!.tags.push('changed by the caller too');
    expect(await ref.items()).toEqual([{ tags: ['a'] }]);
    // The same values round-trip as across a thread, and the same ones are refused, at once.
    const rich = new Map<unknown, unknown>([[1, new Set([new Date(0), 2n])], ['bytes', new Uint8Array([1, 2])], ['u', undefined]]);
    expect(await ref.echo(rich)).toEqual({ id: 'copies', x: rich });
    const refused = await rejection(ref.echo({ callback: () => 1 }));
    expect(refused).toBeInstanceOf(NotSerializable);
    expect(refused.message).toBe("Counter.echo on 'copies', argument 1: cannot send or store function callback");
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(await rejection(ref.echo(cyclic))).toBeInstanceOf(NotSerializable);
    expect(() => ref.tell.echo(Symbol('s'))).toThrow(NotSerializable);
    expect(await rejection(ref.returnFunction())).toBeInstanceOf(NotSerializable);
    // An application error keeps its name, code and fields; the state rolls back.
    const error = await rejection(ref.addThenFail(5));
    expect(error).toMatchObject({ name: 'PaymentError', message: 'card declined for 5', code: 'E_DECLINED', amount: 5 });
    expect(await ref.get()).toBe(0);
  });

  it('carries calls between actors, keeps per-sender order, and reaches the stateless pool', async () => {
    const n = (node = await startNode({ workers: 0, actors: [ACTORS] }));
    const chain = await n.ref(Relay, 'r0').hops(['r1', 'r2'], 'target');
    expect(chain).toEqual({ threads: [threadId, threadId, threadId], value: 0 });
    expect(await n.ref(Relay, 'r0').appendMany('ordered', 1000)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(await n.ref(Relay, 'r0').callStateless(12)).toBe(144);
    expect(await n.ref(Compute, 'pool').square(5)).toBe(25);
  });

  it('runs timers and deactivates idle sessions, which come back with their state', async () => {
    const n = (node = await startNode({ workers: 0, actors: [ACTORS] }));
    const ticker = n.ref(Ticker, 't');
    expect(await ticker.start(20, 'once')).toBe(threadId);
    expect(await eventually(() => ticker.read(), (state) => state.ticks >= 1)).toMatchObject({ ticks: 1, labels: ['once'] });
    await n.ref(Sleepy, 's').set(41);
    await eventually(() => n.stats(), (stats) => stats.workers[0]!.parked === 1);
    expect(await n.ref(Sleepy, 's').get()).toBe(41);
  });

  it('parks sessions on the disk tier and finds them again after a restart', async () => {
    const disk = mkdtempSync(join(tmpdir(), 'wadi-inline-'));
    dirs.push(disk);
    let n = (node = await startNode({ workers: 0, actors: [ACTORS], store: { disk, idleMs: 50 } }));
    for (let i = 0; i < 20; i++) await n.ref(Counter, `disk-${i}`).add(i);
    await eventually(() => n.stats(), (stats) => stats.workers[0]!.activations === 0);
    await n.stop();
    n = node = await startNode({ workers: 0, actors: [ACTORS], store: { disk, idleMs: 50 } });
    for (let i = 0; i < 20; i++) expect(await n.ref(Counter, `disk-${i}`).get()).toBe(i);
  });

  it('drains accepted calls on stop and refuses later ones with Stopped', async () => {
    const n = (node = await startNode({ workers: 0, actors: [ACTORS] }));
    const accepted = Array.from({ length: 200 }, (_, i) => n.ref(Counter, `d-${i % 20}`).add(1));
    const blocked = n.ref(Slow, 'slow').block(100);
    const stopping = n.stop();
    expect(await rejection(n.ref(Counter, 'late').add(1))).toBeInstanceOf(Stopped);
    await stopping;
    expect(await Promise.all(accepted)).toHaveLength(200);
    expect(await blocked).toBe(100);
    node = undefined;
  });

  it('leaves nothing running: a process whose node stopped ends by itself', async () => {
    const disk = mkdtempSync(join(tmpdir(), 'wadi-inline-exit-'));
    dirs.push(disk);
    const script = `
      const { startNode } = await import('@wadi/node');
      const node = await startNode({ workers: 0, actors: [${JSON.stringify(ACTORS.href)}], store: { disk: ${JSON.stringify(disk)}, idleMs: 50 },
        cluster: { port: 0, host: '127.0.0.1', seeds: [], secret: 'inline-exit-secret', log: () => {} } });
      const { Counter } = await import(${JSON.stringify(ACTORS.href)});
      await node.ref(Counter, 'x').add(1);
      await node.stop();
      console.log('stopped');
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: new URL('..', import.meta.url), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exit = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('still running 20 s after it started');
      }, 20_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code ?? -1);
      });
    });
    expect(exit, output).toBe(0);
    expect(output.trim()).toMatch(/(^|\n)stopped$/);
  });
});
