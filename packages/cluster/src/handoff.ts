/**
 * The receiving side of bucket handoffs, as a state machine: when a committed layout gives this
 * node buckets, it fetches each one's directory, at most `maxInFlight` at a time.
 *
 * - From a live previous owner: `handoff-request`, answered by `handoff-data` once that owner has
 *   frozen the bucket (so no update is lost between snapshot and transfer).
 * - From the survivors, when the previous owner is gone (crashed, or refused): `report-request`
 *   to every live member, each answering with what it hosts in the bucket.
 *
 * Every phase has a timeout and an idempotent retry, and a pull that keeps failing falls back to
 * a rebuild, so a handoff never waits forever on a dead node. A pull names the epoch of the layout
 * that moved the bucket here, and goes on under later layouts that keep the bucket here (the
 * previous owner keeps what it has to hand off for as long); a transfer for a bucket that a newer
 * layout moved on is dropped.
 */
import { InvalidArgument } from '@wadi/core';
import type { Layout } from './layout.js';
import type { ClusterMessage, DirectoryEntry } from './messages.js';

export interface HandoffIO {
  send(to: string, message: ClusterMessage): void;
  /** Installs a bucket's directory on this node; messages held for the bucket can then flow. */
  install(bucket: number, epoch: number, entries: DirectoryEntry[], source: 'handoff' | 'rebuild' | 'new'): void;
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
}

export interface HandoffOptions {
  self: string;
  /** This node's incarnation: what an earlier incarnation owned died with it. */
  incarnation?: number;
  /** Transfers in flight at once (K). */
  maxInFlight?: number;
  /** A phase that gets no answer in this long is retried (ms). */
  timeoutMs?: number;
  /** Pull attempts from the previous owner before rebuilding from the survivors. */
  attempts?: number;
}

interface Transfer {
  bucket: number;
  /** The committed layout's epoch: what the directory is installed under, and what a rebuild's reports answer. */
  epoch: number;
  /**
   * The epoch of the layout that moved the bucket here. A pull names it: the previous owner hands
   * off what it held right before that layout, and later layouts (committed while the pull is under
   * way) change nothing about it.
   */
  movedAt: number;
  /** The previous owner to pull from, or undefined to rebuild from reports. */
  from: string | undefined;
  attempts: number;
  sentAt: number | undefined;
  /** Rebuild: members asked, and the entries each reported. */
  asked: Set<string>;
  reports: Map<string, DirectoryEntry[]>;
}

export class HandoffTracker {
  readonly #self: string;
  readonly #incarnation: number | undefined;
  readonly #io: HandoffIO;
  readonly #maxInFlight: number;
  readonly #timeoutMs: number;
  readonly #attempts: number;
  /** bucket -> transfer, in the order they were queued. */
  readonly #transfers = new Map<number, Transfer>();
  /**
   * Buckets rebuilt without some members' reports: those members are asked again until they
   * answer (their sessions are merged in then), leave, or the bucket moves on.
   */
  readonly #lateReports = new Map<number, { epoch: number; missing: Set<string>; sentAt: number }>();
  #live: readonly string[] = [];
  #now = 0;
  #filling = false;
  completed = 0;
  rebuilt = 0;

  constructor(options: HandoffOptions, io: HandoffIO) {
    this.#self = options.self;
    this.#incarnation = options.incarnation;
    this.#io = io;
    this.#maxInFlight = options.maxInFlight ?? 8;
    this.#timeoutMs = options.timeoutMs ?? 2000;
    if (!Number.isInteger(this.#maxInFlight) || this.#maxInFlight < 1) throw new InvalidArgument(`maxHandoffs must be an integer >= 1, got ${JSON.stringify(options.maxInFlight)}`);
    if (!(this.#timeoutMs > 0 && Number.isFinite(this.#timeoutMs))) throw new InvalidArgument(`handoffTimeoutMs must be a positive number, got ${JSON.stringify(options.timeoutMs)}`);
    this.#attempts = options.attempts ?? 3;
  }

  /** Buckets still waiting for their directory. */
  get pending(): number {
    return this.#transfers.size;
  }

  /** Buckets installed without some members' reports, still asking them. */
  get awaitingReports(): number {
    return this.#lateReports.size;
  }

  isPending(bucket: number): boolean {
    return this.#transfers.has(bucket);
  }

  /**
   * A new layout was committed. `live` are the members that can answer (not down). Buckets this
   * node gained are queued; transfers for buckets it no longer owns are dropped.
   */
  layoutCommitted(layout: Layout, previous: Layout | null, live: readonly string[]): void {
    this.#live = live;
    const self = layout.members.findIndex((member) => member.id === this.#self);
    for (const [bucket, transfer] of this.#transfers) {
      if (layout.owners[bucket] !== self) this.#transfers.delete(bucket);
      else transfer.epoch = layout.epoch;
    }
    for (const [bucket, late] of this.#lateReports) {
      if (layout.owners[bucket] !== self) this.#lateReports.delete(bucket);
      else late.epoch = layout.epoch;
    }
    if (self < 0) return;
    for (let bucket = 0; bucket < layout.owners.length; bucket++) {
      if (layout.owners[bucket] !== self || this.#transfers.has(bucket)) continue;
      const before = previous === null ? undefined : previous.members[previous.owners[bucket]!];
      const earlierSelf = before?.id === this.#self && this.#incarnation !== undefined && before.incarnation !== this.#incarnation;
      if (before?.id === this.#self && !earlierSelf) continue;
      // A bucket nobody owned before (a new cluster's first layout): it starts empty. A node whose
      // first layout is a later one (it joined, or restarted, and missed the one before: paused
      // meanwhile) does not know who owned it: it rebuilds, which also tells the owner it had,
      // still waiting to hand it off, that nobody will pull it.
      if (before === undefined && (previous !== null || layout.epoch <= 1)) {
        this.#io.install(bucket, layout.epoch, [], 'new');
        continue;
      }
      // Only the owner in the layout just before this one holds the current directory. If this
      // node skipped a layout, the owner it remembers may hold a stale copy: rebuild instead. So
      // does a restarted node whose earlier incarnation owned the bucket: that copy died with it.
      const pullable = before !== undefined && !earlierSelf && live.includes(before.id) && previous!.epoch === layout.epoch - 1;
      this.#transfers.set(bucket, { bucket, epoch: layout.epoch, movedAt: layout.epoch, from: pullable ? before.id : undefined, attempts: 0, sentAt: undefined, asked: new Set(), reports: new Map() });
    }
  }

  /** Rebuilds these owned buckets from the members (e.g. the worker holding them was replaced). */
  rebuild(buckets: readonly number[], epoch: number): void {
    for (const bucket of buckets) {
      const transfer = this.#transfers.get(bucket);
      if (transfer !== undefined) this.#fallBackToRebuild(transfer, 'asked to rebuild');
      else this.#transfers.set(bucket, { bucket, epoch, movedAt: epoch, from: undefined, attempts: 0, sentAt: undefined, asked: new Set(), reports: new Map() });
    }
  }

  /** Membership changed without a new layout: a member that went down cannot answer any more. */
  membersChanged(live: readonly string[]): void {
    this.#live = live;
    for (const [bucket, late] of this.#lateReports) {
      for (const member of late.missing) if (!live.includes(member)) late.missing.delete(member);
      if (late.missing.size === 0) this.#lateReports.delete(bucket);
    }
    for (const transfer of this.#transfers.values()) {
      if (transfer.from !== undefined && !live.includes(transfer.from)) this.#fallBackToRebuild(transfer, `${transfer.from} is down`);
      for (const asked of transfer.asked) if (!live.includes(asked)) transfer.asked.delete(asked);
      if (transfer.from === undefined) this.#maybeFinishRebuild(transfer);
    }
  }

  tick(now: number): void {
    this.#now = now;
    for (const [bucket, late] of this.#lateReports) {
      if (now - late.sentAt < this.#timeoutMs) continue;
      late.sentAt = now;
      for (const member of late.missing) this.#io.send(member, { t: 'report-request', bucket, epoch: late.epoch });
    }
    let inFlight = 0;
    for (const transfer of this.#transfers.values()) {
      if (transfer.sentAt === undefined) continue;
      if (now - transfer.sentAt >= this.#timeoutMs) this.#retry(transfer, now);
      inFlight++;
    }
    this.#fill(now, inFlight);
  }

  /** Starts queued transfers while fewer than `maxInFlight` are under way. */
  #fill(now: number, inFlight = this.#inFlight()): void {
    // A transfer can finish inside #send (a rebuild with nobody to ask): the loop below goes on.
    if (this.#filling) return;
    this.#filling = true;
    try {
      for (const transfer of this.#transfers.values()) {
        if (inFlight >= this.#maxInFlight) break;
        if (transfer.sentAt !== undefined) continue;
        this.#send(transfer, now);
        if (this.#transfers.has(transfer.bucket)) inFlight++;
      }
    } finally {
      this.#filling = false;
    }
  }

  #inFlight(): number {
    let inFlight = 0;
    for (const transfer of this.#transfers.values()) if (transfer.sentAt !== undefined) inFlight++;
    return inFlight;
  }

  receive(from: string, message: ClusterMessage): void {
    switch (message.t) {
      case 'handoff-data': {
        const transfer = this.#transfers.get(message.bucket);
        if (transfer === undefined || transfer.movedAt !== message.epoch || transfer.from !== from) return;
        this.#finish(transfer, message.entries, 'handoff');
        return;
      }
      case 'handoff-refused': {
        const transfer = this.#transfers.get(message.bucket);
        if (transfer === undefined || transfer.movedAt !== message.epoch || transfer.from !== from) return;
        this.#fallBackToRebuild(transfer, `${from} refused: ${message.reason}`);
        return;
      }
      case 'report': {
        const late = this.#lateReports.get(message.bucket);
        if (late !== undefined && late.epoch === message.epoch && late.missing.delete(from)) {
          if (late.missing.size === 0) this.#lateReports.delete(message.bucket);
          this.#io.install(message.bucket, message.epoch, message.entries, 'rebuild');
          return;
        }
        const transfer = this.#transfers.get(message.bucket);
        if (transfer === undefined || transfer.epoch !== message.epoch || transfer.from !== undefined) return;
        transfer.reports.set(from, message.entries);
        this.#maybeFinishRebuild(transfer);
        return;
      }
      default:
        return;
    }
  }

  #send(transfer: Transfer, now: number): void {
    transfer.sentAt = now;
    if (transfer.from !== undefined) {
      transfer.attempts++;
      this.#io.send(transfer.from, { t: 'handoff-request', bucket: transfer.bucket, epoch: transfer.movedAt });
      return;
    }
    for (const member of this.#live) {
      if (member === this.#self || transfer.reports.has(member)) continue;
      transfer.asked.add(member);
      this.#io.send(member, { t: 'report-request', bucket: transfer.bucket, epoch: transfer.epoch });
    }
    this.#maybeFinishRebuild(transfer);
  }

  #retry(transfer: Transfer, now: number): void {
    if (transfer.from !== undefined && transfer.attempts >= this.#attempts) {
      this.#fallBackToRebuild(transfer, `${transfer.from} did not answer ${transfer.attempts} requests`);
    } else if (transfer.from === undefined && ++transfer.attempts >= this.#attempts) {
      // A member that is up but unreachable from here never answers: install what the others
      // reported rather than wait forever. Its sessions register again when they next activate.
      const missing = [...transfer.asked].filter((member) => !transfer.reports.has(member));
      this.#io.log('warn', `bucket ${transfer.bucket}: rebuilt without reports from ${missing.join(', ')}; asking them again`, { bucket: transfer.bucket });
      this.#lateReports.set(transfer.bucket, { epoch: transfer.epoch, missing: new Set(missing), sentAt: now });
      this.rebuilt++;
      this.#finish(transfer, [...transfer.reports.values()].flat(), 'rebuild');
      return;
    }
    this.#send(transfer, now);
  }

  #fallBackToRebuild(transfer: Transfer, why: string): void {
    this.#io.log('warn', `bucket ${transfer.bucket}: rebuilding its directory from the members (${why})`, { bucket: transfer.bucket, epoch: transfer.epoch });
    transfer.from = undefined;
    transfer.sentAt = undefined;
    transfer.attempts = 0;
  }

  /** A rebuild is complete when every live member asked has reported (this node reports locally). */
  #maybeFinishRebuild(transfer: Transfer): void {
    if (transfer.from !== undefined || transfer.sentAt === undefined) return;
    for (const member of transfer.asked) if (!transfer.reports.has(member)) return;
    const entries: DirectoryEntry[] = [];
    for (const report of transfer.reports.values()) entries.push(...report);
    this.rebuilt++;
    this.#finish(transfer, entries, 'rebuild');
  }

  #finish(transfer: Transfer, entries: DirectoryEntry[], source: 'handoff' | 'rebuild'): void {
    this.#transfers.delete(transfer.bucket);
    this.completed++;
    this.#io.install(transfer.bucket, transfer.epoch, entries, source);
    // The next transfer starts now rather than at the next tick: a join moves hundreds of buckets.
    this.#fill(this.#now);
  }
}
