/**
 * @wadi/cluster: the protocol logic of a wadi cluster as state machines with no I/O: the layout
 * planner, membership and failure detection, election, and the majority commit of layouts. A real
 * node and the simulator drive the same code.
 */
export * from './bucket-host.js';
export * from './cluster-member.js';
export * from './directory.js';
export * from './election.js';
export * from './frame-relay.js';
export * from './held-replies.js';
export * from './handoff.js';
export * from './layout.js';
export * from './membership.js';
export * from './messages.js';
export * from './node-protocol.js';
export * from './planner.js';
export * from './replication.js';
export * from './quorum-gate.js';
export * from './migration.js';
export * from './routing.js';
export * from './session-host.js';
export * from './session-router.js';
