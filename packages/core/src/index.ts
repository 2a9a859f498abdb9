/**
 * @wadi/core: actor definitions, typed refs, mailboxes and turns, errors, ids and hashing, and the
 * codec. No I/O: everything that touches time, threads or sockets is injected.
 */
export * from './actor.js';
export * from './codec.js';
export * from './envelope.js';
export * from './errors.js';
export * from './ids.js';
export * from './registry.js';
export * from './scheduler.js';
export * from './system.js';
export { refTarget } from './internal/ref.js';
export { cloneValue, cloneArgs } from './internal/clone.js';
export * from './expiry-sweep.js';
