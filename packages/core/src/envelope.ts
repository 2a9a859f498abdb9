/**
 * What crosses a thread or a node: envelopes as compact tuples, one msgpack value each, batched
 * by concatenation. The first element says which kind it is.
 */
import type { RoutingPolicy } from './actor.js';
import type { ErrorShape } from './errors.js';

/** Kinds from 16 up are the cluster layer's frames (see `@wadi/cluster`'s routing.ts). */
export const enum Kind {
  Ask = 0,
  Tell = 1,
  Reply = 2,
  Failure = 3,
}

/** An ask: the receiver runs the turn and sends a Reply or Failure to `from` with `requestId`. */
export type AskEnvelope = [Kind.Ask, requestId: number, from: number, type: string, id: string, method: string, args: unknown[], routing?: RoutingPolicy];
export type TellEnvelope = [Kind.Tell, type: string, id: string, method: string, args: unknown[], routing?: RoutingPolicy];
export type ReplyEnvelope = [Kind.Reply, requestId: number, value: unknown];
export type FailureEnvelope = [Kind.Failure, requestId: number, error: Error | ErrorShape];

export type Envelope = AskEnvelope | TellEnvelope | ReplyEnvelope | FailureEnvelope;
