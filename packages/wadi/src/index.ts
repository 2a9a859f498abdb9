/**
 * wadi: the user-facing entry. Define actors with `defineActor`, start a node with `startNode`,
 * and call actors through typed refs.
 */
export {
  defineActor,
  isActorDef,
  bucketOf,
  groupOf,
  WadiError,
  Overloaded,
  Timeout,
  Unavailable,
  WorkerCrashed,
  Stopped,
  UnknownActorType,
  UnknownMethod,
  NotSerializable,
  DecodeError,
  InvalidArgument,
  type ActorContext,
  type ActorDef,
  type ActorOptions,
  type AnyActorDef,
  type Handlers,
  type Ref,
  type RefOf,
  type RefOptions,
  type Timers,
  type TimerId,
  type WadiErrorCode,
} from '@wadi/core';
export { startNode, type NodeOptions, type NodeStats, type WadiNode, type WorkerStats } from '@wadi/node';
