/**
 * The session cookie on its own: signatures, rotation, tampering, header text.
 */
import { describe, expect, it } from 'vitest';
import { CookieSigner, isSessionId, newSessionId, readCookie, serializeCookie } from '../src/cookie.js';

const SECRET = 'a-secret-of-enough-length';

describe('session cookie', () => {
  it('ids are 128 random bits in base64url, a whole group (no slash)', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newSessionId()));
    expect(ids.size).toBe(1000);
    for (const id of ids) {
      expect(isSessionId(id)).toBe(true);
      expect(Buffer.from(id, 'base64url')).toHaveLength(16);
      expect(id).not.toContain('/');
    }
  });

  it('verifies what it signed and refuses any change', () => {
    const signer = new CookieSigner(SECRET);
    const id = newSessionId();
    const value = signer.sign(id);
    expect(signer.verify(value)).toEqual({ id, stale: false });
    const [, signature] = value.split('.');
    const otherId = newSessionId();
    expect(signer.verify(`${otherId}.${signature}`)).toBeUndefined();
    // Every other last character, including those that decode to the same bytes (its two unused bits).
    for (const last of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_') {
      if (last !== signature!.at(-1)) expect(signer.verify(`${id}.${signature!.slice(0, -1)}${last}`)).toBeUndefined();
    }
    for (const bad of ['', id, `${id}.`, `.${signature}`, `${id}.${signature}x`, `${id}/x.${signature}`, 'x'.repeat(5000)]) expect(signer.verify(bad)).toBeUndefined();
    expect(new CookieSigner('another-secret-entirely').verify(value)).toBeUndefined();
  });

  it('rotates secrets: the first signs, all verify, older ones are marked stale', () => {
    const old = new CookieSigner('the-old-secret-1234');
    const rotated = new CookieSigner(['the-new-secret-5678', 'the-old-secret-1234']);
    const id = newSessionId();
    expect(rotated.verify(old.sign(id))).toEqual({ id, stale: true });
    expect(rotated.verify(rotated.sign(id))).toEqual({ id, stale: false });
    expect(old.verify(rotated.sign(id))).toBeUndefined();
  });

  it('answers the same for a value it has verified before, and still refuses every change of it', () => {
    const rotated = new CookieSigner(['the-new-secret-5678', 'the-old-secret-1234']);
    const id = newSessionId();
    const stale = new CookieSigner('the-old-secret-1234').sign(id);
    const fresh = rotated.sign(id);
    for (let round = 0; round < 3; round++) {
      expect(rotated.verify(stale)).toEqual({ id, stale: true });
      expect(rotated.verify(fresh)).toEqual({ id, stale: false });
      const last = fresh.at(-1) === 'A' ? 'B' : 'A';
      expect(rotated.verify(`${fresh.slice(0, -1)}${last}`)).toBeUndefined();
      expect(rotated.verify(`${fresh}x`)).toBeUndefined();
    }
    // Past what it remembers, the oldest values are checked again: same answers.
    const many = Array.from({ length: 10_050 }, () => newSessionId());
    for (const other of many) expect(rotated.verify(rotated.sign(other))?.id).toBe(other);
    expect(rotated.verify(stale)).toEqual({ id, stale: true });
    expect(rotated.verify(rotated.sign(many[0]!))).toEqual({ id: many[0], stale: false });
  });

  it('refuses short or missing secrets', () => {
    expect(() => new CookieSigner([])).toThrow(/at least one/);
    expect(() => new CookieSigner('short')).toThrow(/16 characters/);
  });

  it('reads one cookie out of a header and writes secure defaults', () => {
    expect(readCookie('a=1; wadi.sid=abc.def; b=2', 'wadi.sid')).toBe('abc.def');
    expect(readCookie('wadi.sid="x%2Fy"', 'wadi.sid')).toBe('x/y');
    expect(readCookie('wadi.sidx=1', 'wadi.sid')).toBeUndefined();
    expect(readCookie(undefined, 'wadi.sid')).toBeUndefined();
    expect(serializeCookie('wadi.sid', 'v', { path: '/', httpOnly: true, sameSite: 'lax', secure: false })).toBe('wadi.sid=v; Path=/; HttpOnly; SameSite=Lax');
    const cleared = serializeCookie('wadi.sid', '', { path: '/', httpOnly: true, sameSite: 'strict', secure: true, maxAgeMs: 0 });
    expect(cleared).toContain('Max-Age=0');
    expect(cleared).toContain('Expires=Thu, 01 Jan 1970 00:00:00 GMT');
    expect(cleared).toContain('Secure');
    expect(cleared).toContain('SameSite=Strict');
  });
});
