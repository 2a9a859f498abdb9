/**
 * @wadi/testkit: deterministic simulation of wadi clusters. Many nodes' real protocol code
 * (`@wadi/cluster`'s `NodeProtocol` and `BucketHost`) in one process, over a simulated network
 * with a virtual clock and one seeded random generator; fault schedules that fast-check generates
 * and shrinks; the safety and liveness properties every run is checked against; replay.
 */
export * from './arbitraries.js';
export * from './event-queue.js';
export * from './invariants.js';
export * from './network.js';
export * from './random.js';
export * from './run.js';
export * from './schedule.js';
export * from './sim-node.js';
export * from './simulation.js';
export * from './trace.js';
