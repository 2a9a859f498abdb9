/**
 * The session actor's expiry as the store sees it (`expiresAt`): a session is kept, parked,
 * until its idle timeout passes, and then dropped; one never saved is not kept at all.
 */
import { describe, expect, it } from 'vitest';
import { ActorSystem } from '@wadi/core';
import { HttpSession } from '../src/actors.js';

function sessionSystem() {
  const wall = { now: Date.now() };
  const expired: string[] = [];
  const system = new ActorSystem({ wallClock: () => wall.now, onExpired: (_type, id) => expired.push(id) });
  system.registry.add(HttpSession);
  return { system, wall, expired };
}

describe('HttpSession expiry', () => {
  it('is parked while its idle timeout runs, then dropped', async () => {
    const { system, wall, expired } = sessionSystem();
    const ref = system.ref(HttpSession, 'kept/session');
    await ref.open('t1', 60_000, 1_000);
    await ref.save('t1', [['cart', ['apple']]], [], 60_000, true);
    expect(system.deactivate(HttpSession.name, 'kept/session')).toBe(true);
    expect(system.stats()).toMatchObject({ parked: 1, expired: 0 });
    wall.now += 59_000;
    expect(system.dropExpired(10)).toBe(0);
    wall.now += 70_000;
    expect(system.dropExpired(10)).toBe(1);
    expect(expired).toEqual(['kept/session']);
  });

  it('is not kept at all when it was only opened, never saved', async () => {
    const { system, expired } = sessionSystem();
    await system.ref(HttpSession, 'empty/session').open('t1', 60_000, 1_000);
    expect(system.deactivate(HttpSession.name, 'empty/session')).toBe(true);
    expect(system.stats()).toMatchObject({ parked: 0, expired: 1 });
    expect(expired).toEqual(['empty/session']);
  });
});
