/**
 * The in-process queue of a session's requests.
 */
import { describe, expect, it } from 'vitest';
import { LocalTurns, SessionBusy, withBackoff } from '../src/turns.js';

describe('local turns', () => {
  it('runs the requests of one session one at a time, in arrival order, and others at once', async () => {
    const turns = new LocalTurns();
    const log: string[] = [];
    const run = async (key: string, name: string): Promise<void> => {
      const release = await turns.acquire(key, 10_000);
      log.push(`${name} start`);
      await new Promise((resolve) => setTimeout(resolve, 5));
      log.push(`${name} end`);
      release();
    };
    await Promise.all([run('s', 'a'), run('s', 'b'), run('s', 'c'), run('t', 'x')]);
    expect(log.filter((line) => !line.startsWith('x'))).toEqual(['a start', 'a end', 'b start', 'b end', 'c start', 'c end']);
    expect(log.indexOf('x start')).toBeLessThan(log.indexOf('a end'));
    expect(turns.size).toBe(0);
  });

  it('a request that gives up waiting does not let later ones overtake the one it waited for', async () => {
    const turns = new LocalTurns();
    const first = await turns.acquire('s', 1000);
    await expect(turns.acquire('s', 10)).rejects.toBeInstanceOf(SessionBusy);
    let thirdRan = false;
    const third = turns.acquire('s', 10_000).then((release) => {
      thirdRan = true;
      release();
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(thirdRan).toBe(false);
    first();
    await third;
    expect(thirdRan).toBe(true);
  });

  it('a turn held for its lease is given up by itself; its late release changes nothing', async () => {
    const turns = new LocalTurns();
    const holder = await turns.acquire('s', 1000, 30);
    const next = await turns.acquire('s', 5000, 30);
    holder(); // late: the turn is the next one's now
    let thirdRan = false;
    const third = turns.acquire('s', 5000, 10_000).then((release) => {
      thirdRan = true;
      release();
    });
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(thirdRan).toBe(false); // still the next one's turn
    next();
    await third;
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(turns.size).toBe(0);
  });

  it('backs off while busy and gives up with SessionBusy', async () => {
    let calls = 0;
    let retries = 0;
    await expect(withBackoff(async () => (++calls < 4 ? 'busy' : 'done'), 10_000, () => retries++)).resolves.toBe('done');
    expect([calls, retries]).toEqual([4, 3]);
    await expect(withBackoff(async () => 'busy', 30, () => undefined)).rejects.toBeInstanceOf(SessionBusy);
  });
});
