/**
 * @wadi/testkit: deterministic simulation of wadi clusters. Many nodes' real protocol and session
 * code (`@wadi/cluster`'s `NodeProtocol`, `BucketHost`, `SessionRouter`, `SessionHost` and
 * migrations, `@wadi/core`'s `ActorSystem`) in one process, over a simulated network with a
 * virtual clock and one seeded random generator; fault schedules that fast-check generates and
 * shrinks; the safety and liveness properties every run is checked against, and what the real
 * sessions applied; replay.
 */
export * from './arbitraries.js';
export * from './event-queue.js';
export * from './invariants.js';
export * from './network.js';
export * from './random.js';
export * from './run.js';
export * from './schedule.js';
export * from './session-check.js';
export * from './sessions.js';
export * from './sim-node.js';
export * from './simulation.js';
export * from './trace.js';
export * from './virtual-scheduler.js';
