/**
 * Real sessions in a simulated cluster, and what is checked about the calls made to them.
 *
 * A session is a `Log` actor (`defineActor`) hosted by the real `ActorSystem` of a simulated
 * worker: its state records every (sender, n) it applied, in order. Senders are the threads of
 * the simulated nodes (each worker, and the main thread): a sender numbers its own messages to
 * each session 1, 2, 3, ... and sends them as asks and tells through the real `SessionRouter`
 * (the `call` and `migrate` steps). The `CallLedger` keeps what was sent, what each ask's reply
 * said, and every application as it happens; the latter flags a duplicate or an out-of-order
 * application the moment it happens.
 *
 * What is checked about them once a run settled is in session-check.ts.
 */
import { defineActor, type ActorDef, type Handlers, type RoutingPolicy } from '@wadi/core';

export const LOG_TYPE = 'Log';

/** What a session remembers: every message it applied, in order. */
export interface LogState {
  applied: [sender: string, n: number][];
  /**
   * Which activation started this log: set when the state is created, carried along by moves.
   * A session created afresh (its copy was lost, or a second activation) has another lineage.
   */
  lineage: string;
}

/** The reply to `append`: the message, and its position in the log (1-based). */
export type AppendReply = [sender: string, n: number, position: number];

/** Told each time a `Log` applies a message: the simulation's window into the session's turns. */
export type AppliedHook = (id: string, sender: string, n: number, position: number, lineage: string) => void;

export type LogActor = ActorDef<typeof LOG_TYPE, LogState, Handlers<LogState>>;

/** The `Log` actor type; `applied` hears every application (per simulated worker); `lineage` names each new log. */
export function logActor(applied: AppliedHook, lineage: () => string = () => ''): LogActor {
  return defineActor(LOG_TYPE, {
    state: (): LogState => ({ applied: [], lineage: lineage() }),
    handlers: {
      append(state: LogState, sender: string, n: number): AppendReply {
        state.applied.push([sender, n]);
        applied(this.id, sender, n, state.applied.length, state.lineage);
        return [sender, n, state.applied.length];
      },
      read(state: LogState): LogState {
        return state;
      },
    },
  });
}

/** Sessions the `call` and `migrate` steps choose from: groups of two (a group moves together). */
export const SESSION_POOL = 8;

export function sessionName(pick: number): string {
  const index = Math.abs(Math.trunc(pick)) % SESSION_POOL;
  return `g${index % (SESSION_POOL / 2)}/l${index}`;
}

export interface SentMessage {
  sender: string;
  session: string;
  n: number;
  ask: boolean;
  routing: RoutingPolicy | '';
  sentAt: number;
  /** Its sender's node was a member of the layout it had committed when it sent it (not joining, not gone). */
  member: boolean;
  /** For an ask: its outcome once known. */
  outcome: 'ok' | 'failed' | undefined;
  reply: unknown;
  /** How many times it was applied (by any activation). */
  applied: number;
}

export interface LedgerSender {
  /** `node#incarnation/thread`. */
  key: string;
  node: string;
  incarnation: number;
}

/** Everything sent to the real sessions, answered by them, and applied by them. */
export class CallLedger {
  /** session -> sender -> messages in the order sent (index n - 1). */
  readonly sent = new Map<string, Map<string, SentMessage[]>>();
  readonly senders = new Map<string, LedgerSender>();
  /** session -> sender -> highest n applied so far. */
  readonly #highest = new Map<string, Map<string, number>>();
  /** session -> its lineages in the order they first applied a message. */
  readonly #lineages = new Map<string, string[]>();
  asks = 0;
  tells = 0;
  applications = 0;
  #unresolved = 0;

  get used(): boolean {
    return this.sent.size > 0;
  }

  /** Messages whose fate is not known yet: asks without an outcome, tells not applied. */
  get unresolved(): number {
    return this.#unresolved;
  }

  /** Records a message about to be sent; returns it (its `n` is the sender's next for the session). */
  send(sender: LedgerSender, session: string, ask: boolean, routing: SentMessage['routing'], at: number, member: boolean): SentMessage {
    this.senders.set(sender.key, sender);
    let bySender = this.sent.get(session);
    if (bySender === undefined) this.sent.set(session, (bySender = new Map()));
    let list = bySender.get(sender.key);
    if (list === undefined) bySender.set(sender.key, (list = []));
    const message: SentMessage = { sender: sender.key, session, n: list.length + 1, ask, routing, sentAt: at, member, outcome: undefined, reply: undefined, applied: 0 };
    list.push(message);
    if (ask) this.asks++;
    else this.tells++;
    this.#unresolved++;
    return message;
  }

  message(session: string, sender: string, n: number): SentMessage | undefined {
    return this.sent.get(session)?.get(sender)?.[n - 1];
  }

  /** An ask's outcome arrived. */
  settled(message: SentMessage, ok: boolean, value: unknown): void {
    if (message.outcome !== undefined) return;
    message.outcome = ok ? 'ok' : 'failed';
    message.reply = value;
    this.#unresolved--;
  }

  /** A tell could not even be sent. */
  refused(message: SentMessage, error: unknown): void {
    if (message.outcome !== undefined) return;
    message.outcome = 'failed';
    message.reply = error;
    if (message.applied === 0) this.#unresolved--;
  }

  /**
   * A session applied a message; returns what is wrong with that (undefined when nothing is): a
   * message applied twice, or after one its sender sent after it.
   */
  applied(session: string, sender: string, n: number): { property: string; detail: string } | undefined {
    this.applications++;
    const message = this.message(session, sender, n);
    if (message === undefined) return { property: 'no duplicate', detail: `${session} applied ${sender} #${n}, which was never sent` };
    message.applied++;
    if (message.applied === 1 && !message.ask && message.outcome === undefined) this.#unresolved--;
    let highest = this.#highest.get(session);
    if (highest === undefined) this.#highest.set(session, (highest = new Map()));
    const before = highest.get(sender) ?? 0;
    highest.set(sender, Math.max(before, n));
    if (message.applied > 1) return { property: 'no duplicate', detail: `${session} applied ${sender} #${n} a second time` };
    if (n < before) return { property: 'per-sender order', detail: `${session} applied ${sender} #${n} after #${before}` };
    return undefined;
  }

  /**
   * A session's activation of lineage `lineage` committed a turn: wrong if a newer lineage of the
   * session had committed one before. Then two activations of one session both committed turns
   * (a split brain), whatever became of either later.
   */
  committedBy(session: string, lineage: string): { property: string; detail: string } | undefined {
    let lineages = this.#lineages.get(session);
    if (lineages === undefined) this.#lineages.set(session, (lineages = []));
    const index = lineages.indexOf(lineage);
    if (index < 0) {
      lineages.push(lineage);
      return undefined;
    }
    if (index === lineages.length - 1) return undefined;
    return { property: 'one activation commits', detail: `${session}'s activation ${lineage} committed a turn after a newer one (${lineages.slice(index + 1).join(', ')}) had` };
  }

  /** Every message of every sender, for the final checks. */
  *messages(): IterableIterator<SentMessage> {
    for (const bySender of this.sent.values()) for (const list of bySender.values()) yield* list;
  }
}
