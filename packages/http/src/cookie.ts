/**
 * The session cookie: random session ids, their HMAC-SHA256 signatures, and the `Cookie` /
 * `Set-Cookie` header text.
 *
 * A cookie value is `<id>.<signature>`, both base64url. The id is 128 random bits from the
 * operating system's generator, so it is unguessable and never contains `/`: the id is a whole
 * wadi group (see README "Ids, groups and buckets"), and `<id>/session`, `<id>/cart` ... are one
 * user's sessions, kept together.
 *
 * Secrets rotate: the first of the list signs, every one of them verifies, and a cookie signed by
 * an older secret is re-signed on its next response.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** 16 random bytes: 128 bits, as base64url (22 characters). */
const ID_BYTES = 16;
const ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;
/** An HMAC-SHA256 as base64url without padding: 43 characters. */
const SIGNATURE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function newSessionId(): string {
  return randomBytes(ID_BYTES).toString('base64url');
}

export function isSessionId(value: string): boolean {
  return ID_PATTERN.test(value);
}

/** Cookie values a signer remembers having verified (see `CookieSigner.verify`). */
const VERIFIED_CACHE_SIZE = 10_000;

export class CookieSigner {
  readonly #secrets: readonly Buffer[];
  /**
   * Values that verified, and what they carry. A client sends the same cookie with every request,
   * and an HMAC is a noticeable part of a request's cost, so a value seen recently is not checked
   * again. Only values that verified are kept, under the whole value: a lookup tells nothing about
   * a signature that is merely close, and the secrets never change for a signer. The oldest entry
   * goes first when it is full.
   */
  readonly #verified = new Map<string, Readonly<{ id: string; stale: boolean }>>();

  constructor(secrets: string | readonly string[]) {
    if (typeof secrets !== 'string' && !Array.isArray(secrets)) throw new TypeError(`the cookie secret must be a string or an array of strings, got ${typeof secrets}`);
    const list = typeof secrets === 'string' ? [secrets] : [...secrets];
    if (list.length === 0) throw new TypeError('wadi sessions need at least one cookie secret');
    for (const secret of list) {
      // 16 characters is far below what anyone should use, but refuses the empty and the obviously wrong.
      if (typeof secret !== 'string' || secret.length < 16) throw new TypeError('every cookie secret must be a string of at least 16 characters');
    }
    this.#secrets = list.map((secret) => Buffer.from(secret, 'utf8'));
  }

  sign(id: string): string {
    return `${id}.${this.#mac(this.#secrets[0]!, id)}`;
  }

  /**
   * The session id a cookie value carries, or undefined when it is malformed or no secret signed
   * it. `stale` is true when an older secret signed it (re-sign it with the current one).
   */
  verify(value: string): Readonly<{ id: string; stale: boolean }> | undefined {
    const known = this.#verified.get(value);
    if (known !== undefined) return known;
    const verified = this.#check(value);
    if (verified !== undefined) {
      if (this.#verified.size >= VERIFIED_CACHE_SIZE) this.#verified.delete(this.#verified.keys().next().value!);
      this.#verified.set(value, verified);
    }
    return verified;
  }

  #check(value: string): Readonly<{ id: string; stale: boolean }> | undefined {
    const dot = value.indexOf('.');
    if (dot < 0) return undefined;
    const id = value.slice(0, dot);
    const signature = value.slice(dot + 1);
    if (!isSessionId(id) || !SIGNATURE_PATTERN.test(signature)) return undefined;
    // The text is compared, not the decoded bytes: the last base64url character carries two
    // unused bits, and a signature with other values there must not verify.
    const given = Buffer.from(signature, 'latin1');
    for (let i = 0; i < this.#secrets.length; i++) {
      const expected = Buffer.from(this.#mac(this.#secrets[i]!, id), 'latin1');
      // Equal lengths by the pattern above; compare in constant time so timing says nothing.
      if (expected.length === given.length && timingSafeEqual(expected, given)) return Object.freeze({ id, stale: i > 0 });
    }
    return undefined;
  }

  #mac(secret: Buffer, id: string): string {
    return createHmac('sha256', secret).update(id).digest('base64url');
  }
}

/** The value of cookie `name` in a `Cookie` header; the first one wins when it appears twice. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const equals = part.indexOf('=');
    if (equals < 0) continue;
    if (part.slice(0, equals).trim() !== name) continue;
    let value = part.slice(equals + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    try {
      return decodeURIComponent(value);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export interface CookieAttributes {
  path: string;
  domain?: string | undefined;
  httpOnly: boolean;
  sameSite: 'lax' | 'strict' | 'none';
  secure: boolean;
  /** Lifetime in the browser; undefined: until the browser closes. */
  maxAgeMs?: number | undefined;
}

const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function checkCookieName(name: string): void {
  if (typeof name !== 'string' || !COOKIE_NAME.test(name)) throw new TypeError(`cookie name ${JSON.stringify(name)} is not a valid cookie name token`);
}

/** RFC 6265 path-value: any character but controls and ';', starting at the root. */
const COOKIE_PATH = /^\/[\x20-\x3a\x3c-\x7e]*$/;
/** A host name, optionally with the leading dot browsers ignore. */
const COOKIE_DOMAIN = /^\.?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/;
/** Browsers cap a cookie's lifetime at 400 days (RFC 6265bis). */
export const MAX_COOKIE_AGE_MS = 400 * 24 * 3600 * 1000;

/** Refuses cookie attributes that would break the header or inject attributes of their own. */
export function checkCookieAttributes(attributes: { path: unknown; domain?: unknown; maxAgeMs?: unknown }): void {
  if (typeof attributes.path !== 'string' || !COOKIE_PATH.test(attributes.path)) {
    throw new TypeError(`cookie.path must start with '/' and hold no control characters or ';', got ${JSON.stringify(attributes.path)}`);
  }
  if (attributes.domain !== undefined && (typeof attributes.domain !== 'string' || !COOKIE_DOMAIN.test(attributes.domain))) {
    throw new TypeError(`cookie.domain must be a host name, got ${JSON.stringify(attributes.domain)}`);
  }
  if (attributes.maxAgeMs !== undefined && (attributes.maxAgeMs as number) > MAX_COOKIE_AGE_MS) {
    throw new TypeError(`cookie.maxAgeMs must be at most ${MAX_COOKIE_AGE_MS} (400 days: browsers cap cookies there), got ${String(attributes.maxAgeMs)}`);
  }
}

/** A `Set-Cookie` header value. `maxAgeMs: 0` clears the cookie. */
export function serializeCookie(name: string, value: string, attributes: CookieAttributes): string {
  const parts = [`${name}=${encodeURIComponent(value)}`, `Path=${attributes.path}`];
  if (attributes.domain !== undefined) parts.push(`Domain=${attributes.domain}`);
  if (attributes.maxAgeMs !== undefined) {
    const seconds = Math.max(0, Math.floor(attributes.maxAgeMs / 1000));
    parts.push(`Max-Age=${seconds}`, `Expires=${new Date(seconds === 0 ? 0 : Date.now() + seconds * 1000).toUTCString()}`);
  }
  if (attributes.httpOnly) parts.push('HttpOnly');
  if (attributes.secure) parts.push('Secure');
  parts.push(`SameSite=${attributes.sameSite === 'lax' ? 'Lax' : attributes.sameSite === 'strict' ? 'Strict' : 'None'}`);
  return parts.join('; ');
}
