/**
 * Session replication: after a turn that changed a session's state, its host ships the new state
 * with the session's version to the session's replica targets, and the targets keep it until the
 * session moves, is destroyed or the layout no longer names them. This module holds the rules
 * (targets, fencing, the async loss window) shared by the host side and the replica side.
 */

/**
 * Bounds how long before a crash of its host an acknowledged write of an `async` session may be
 * lost. An `async` turn's state is shipped in the same event-loop turn as its reply, so in
 * practice the window is one network round trip; when the replicas fall behind (their oldest
 * unacknowledged shipment is older than half this window), later `async` replies wait for the
 * replicas like `sync` ones until they catch up, so the window holds under load too.
 */
export const ASYNC_LOSS_WINDOW_MS = 1000;
