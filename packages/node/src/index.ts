/**
 * @wadi/node: a wadi node in one process, with worker threads hosting actors, batched
 * cross-thread messaging, a control plane over comlink and a pool for stateless work.
 */
export { startNode, type NodeOptions, type NodeStats, type StoreOptions, type WadiNode, type WorkerState, type WorkerStats } from './node.js';
export { MAIN_THREAD } from './internal/protocol.js';
export { type ClusterHandle, type ClusterHost, type ClusterOptions, type NodeStatus } from './cluster-node.js';
export { connect, type ConnectOptions, type WadiClient } from './client.js';
export { SessionStates, type SessionStatesOptions, type SessionStatesStats } from './internal/session-states.js';
export { ASYNC_LOSS_WINDOW_MS } from '@wadi/cluster';
export { heapEvicter, idleEvicter, lruEvicter, type Candidate, type MemoryEvicter } from './internal/demotions.js';
export { type EvicterContext, type EvicterModule } from './internal/modules.js';
