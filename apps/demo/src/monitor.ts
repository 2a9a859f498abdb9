/**
 * What the dashboard shows: it polls every node's `GET /status` (and the shop's `/_wadi/stats`),
 * the newest `GET /layout`, and turns the differences between polls into rates (calls and
 * requests per second) and events (layouts, coordinator changes, suspicions, migrations,
 * evacuations), together with what the supervisor says about the processes.
 */
import { EventEmitter } from 'node:events';
import type { NodeStatus } from 'wadi';
import type { NodeProcess, Supervisor } from './supervisor.js';

export const POLL_MS = 500;
const FETCH_TIMEOUT_MS = 1_000;
const MAX_EVENTS = 200;

export interface NodeView {
  id: string;
  /** Colour slot: the node's position in start order. */
  index: number;
  process: NodeProcess['state'];
  pid: number | null;
  incarnation: number | null;
  /** The node's state in the cluster, as the coordinator sees it (or as it says itself). */
  member: string;
  coordinator: boolean;
  app: string | null;
  status: string | null;
  epoch: number;
  bucketsOwned: number;
  /** Buckets whose sessions this node holds copies of, as a backup. */
  bucketsBackedUp: number;
  handoffsPending: number;
  sessions: { memory: number; disk: number };
  requestsPerSec: number;
  callsPerSec: number;
  /** Calls its sessions received by hops taken: cumulative. */
  hops: Record<string, number>;
  migratedIn: number;
  migratedOut: number;
  evacuation: string;
  http: { tampered: number; redirected: number; expired: number; created: number; failed: number } | null;
  reachable: boolean;
}

export interface DashboardEvent {
  at: number;
  kind: 'process' | 'layout' | 'coordinator' | 'member' | 'migration' | 'evacuation' | 'load' | 'info';
  text: string;
}

export interface Snapshot {
  at: number;
  epoch: number;
  coordinator: string | null;
  buckets: number;
  /** Owner of each bucket as an index into `nodes`, -1 when unknown. */
  owners: number[];
  /** R per bucket (`replicas`), flat: `backups[b * replicas + k]` is an index into `nodes`, -1 for none. */
  backups: number[];
  replicas: number;
  /** Buckets whose backup on that node is still receiving its copy: `[bucket, node index]`. */
  incoming: [number, number][];
  nodes: NodeView[];
  /** `shared`: sessions in the shared store, cluster-wide (null without one). */
  totals: { sessions: number; shared: number | null; requestsPerSec: number; callsPerSec: number; hops: Record<string, number> };
  events: DashboardEvent[];
}

interface Previous {
  at: number;
  calls: number;
  requests: number;
  migratedIn: number;
  migratedOut: number;
  evacuation: string;
}

/** What the dashboard keeps of `GET /layout`: node ids instead of member indexes. */
interface LayoutView {
  epoch: number;
  ownerIds: string[];
  replicas: number;
  /** Flat like the layout's `backups`, with node ids (null for an unused slot). */
  backupIds: (string | null)[];
  incoming: [number, string][];
}

/** The part of a layout (`GET /layout`) the dashboard reads. */
interface LayoutJson {
  epoch: number;
  ownerIds: string[];
  members: { id: string }[];
  replicas?: number;
  backups?: number[];
  incoming?: [number, number, number][];
}

type AppStats = { sessions: { requests: number; tampered: number; redirected: number; expired: number; created: number; failed: number } };

/** Events: 'snapshot' (Snapshot). */
export class Monitor extends EventEmitter {
  readonly #supervisor: Supervisor;
  readonly #events: DashboardEvent[] = [];
  readonly #previous = new Map<string, Previous>();
  #timer: NodeJS.Timeout | undefined;
  #polling = false;
  #layout: LayoutView | null = null;
  #coordinator: string | null = null;
  #memberStates = new Map<string, string>();
  #snapshot: Snapshot;

  constructor(supervisor: Supervisor, buckets: number) {
    super();
    this.#supervisor = supervisor;
    this.#snapshot = { at: Date.now(), epoch: 0, coordinator: null, buckets, owners: Array<number>(buckets).fill(-1), backups: [], replicas: 0, incoming: [], nodes: [], totals: { sessions: 0, shared: null, requestsPerSec: 0, callsPerSec: 0, hops: {} }, events: [] };
    supervisor.on('change', (node: NodeProcess) => this.#processChanged(node));
  }

  start(): void {
    this.#timer = setInterval(() => void this.poll(), POLL_MS);
    void this.poll();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  snapshot(): Snapshot {
    return this.#snapshot;
  }

  /** The latest layout's owner of each bucket, by node id. */
  owners(): string[] | null {
    return this.#layout?.ownerIds ?? null;
  }

  event(kind: DashboardEvent['kind'], text: string): void {
    this.#events.push({ at: Date.now(), kind, text });
    if (this.#events.length > MAX_EVENTS) this.#events.splice(0, this.#events.length - MAX_EVENTS);
  }

  async poll(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      const processes = this.#supervisor.nodes;
      const polled = await Promise.all(
        processes.map(async (node) => {
          if (node.status === undefined || !(node.state === 'running' || node.state === 'stopping')) return { node, status: undefined, app: undefined };
          const [status, app] = await Promise.all([getJson<NodeStatus>(`${node.status}/status`), getJson<AppStats>(`${node.app}/_wadi/stats`)]);
          return { node, status, app };
        }),
      );
      const statuses = polled.flatMap((entry) => (entry.status === undefined ? [] : [entry.status]));
      const newest = statuses.reduce<NodeStatus | undefined>((best, status) => (best === undefined || status.epoch > best.epoch ? status : best), undefined);
      const coordinatorStatus = statuses.find((status) => status.id === newest?.coordinator) ?? newest;
      if (newest !== undefined && newest.epoch !== this.#layout?.epoch) await this.#fetchLayout(polled.find((entry) => entry.status === newest)!.node);
      this.#observeCluster(coordinatorStatus);
      const now = Date.now();
      const views = polled.map(({ node, status, app }) => this.#view(node, status, app, coordinatorStatus, now));
      const index = new Map(views.map((view, i) => [view.id, i]));
      const layout = this.#layout;
      const indexOf = (id: string | null): number => (id === null ? -1 : (index.get(id) ?? -1));
      const owners = layout === null ? this.#snapshot.owners : layout.ownerIds.map(indexOf);
      const shared = statuses.reduce<number | null>((most, status) => (status.store?.shared == null ? most : Math.max(most ?? 0, status.store.shared)), null);
      const hops: Record<string, number> = {};
      for (const view of views) for (const [count, calls] of Object.entries(view.hops)) hops[count] = (hops[count] ?? 0) + calls;
      this.#snapshot = {
        at: now,
        epoch: this.#layout?.epoch ?? 0,
        coordinator: this.#coordinator,
        buckets: owners.length,
        owners,
        backups: layout === null ? this.#snapshot.backups : layout.backupIds.map(indexOf),
        replicas: layout?.replicas ?? this.#snapshot.replicas,
        incoming: layout === null ? this.#snapshot.incoming : layout.incoming.map(([bucket, id]) => [bucket, indexOf(id)]),
        nodes: views,
        totals: {
          sessions: views.reduce((sum, view) => sum + view.sessions.memory + view.sessions.disk, 0),
          shared,
          requestsPerSec: views.reduce((sum, view) => sum + view.requestsPerSec, 0),
          callsPerSec: views.reduce((sum, view) => sum + view.callsPerSec, 0),
          hops,
        },
        events: [...this.#events],
      };
      this.emit('snapshot', this.#snapshot);
    } finally {
      this.#polling = false;
    }
  }

  async #fetchLayout(from: NodeProcess): Promise<void> {
    const layout = await getJson<LayoutJson>(`${from.status}/layout`);
    if (layout === undefined || layout === null) return;
    const before = this.#layout;
    const idOf = (member: number): string | null => layout.members[member]?.id ?? null;
    this.#layout = {
      epoch: layout.epoch,
      ownerIds: layout.ownerIds,
      replicas: layout.replicas ?? 0,
      backupIds: (layout.backups ?? []).map(idOf),
      incoming: (layout.incoming ?? []).flatMap(([bucket, member]) => {
        const id = idOf(member);
        return id === null ? [] : [[bucket, id] as [number, string]];
      }),
    };
    const counts = new Map<string, number>();
    for (const id of layout.ownerIds) counts.set(id, (counts.get(id) ?? 0) + 1);
    const share = [...counts].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true })).map(([id, count]) => `${id} ${count}`).join(' · ');
    const after = this.#layout;
    const moved = before === null ? null : after.ownerIds.filter((id, bucket) => before.ownerIds[bucket] !== id).length;
    const backupsMoved = before === null || before.replicas !== after.replicas ? null : after.backupIds.filter((id, slot) => before.backupIds[slot] !== id).length;
    const changes = [moved === null ? '' : `, ${moved} buckets moved`, backupsMoved === null ? '' : `, ${backupsMoved} backups moved`, after.incoming.length === 0 ? '' : `, ${after.incoming.length} backups receiving copies`].join('');
    this.event('layout', `layout epoch ${layout.epoch} committed${changes}: ${share}`);
  }

  #observeCluster(status: NodeStatus | undefined): void {
    if (status === undefined) return;
    if (status.coordinator !== this.#coordinator) {
      if (status.coordinator !== null) this.event('coordinator', `${status.coordinator} is the coordinator`);
      this.#coordinator = status.coordinator;
    }
    for (const member of status.members) {
      const before = this.#memberStates.get(member.id);
      if (before !== undefined && before !== member.state) this.event('member', `${member.id} is ${member.state} (was ${before}), as ${status.id} sees it`);
      this.#memberStates.set(member.id, member.state);
    }
  }

  #view(node: NodeProcess, status: NodeStatus | undefined, app: AppStats | undefined, coordinator: NodeStatus | undefined, now: number): NodeView {
    const key = `${node.id}@${node.incarnation ?? 0}`;
    const calls = status === undefined ? 0 : Object.values(status.routing.hops).reduce((sum, n) => sum + n, 0);
    const requests = app?.sessions.requests ?? 0;
    const migratedIn = Number(status?.routing['migratedIn'] ?? 0);
    const migratedOut = Number(status?.routing['migratedOut'] ?? 0);
    const evacuation = status?.evacuation ?? 'idle';
    const previous = this.#previous.get(key);
    let callsPerSec = 0;
    let requestsPerSec = 0;
    if (status !== undefined) {
      if (previous !== undefined && now > previous.at) {
        const seconds = (now - previous.at) / 1000;
        callsPerSec = Math.max(0, (calls - previous.calls) / seconds);
        requestsPerSec = Math.max(0, (requests - previous.requests) / seconds);
        if (migratedIn > previous.migratedIn) this.event('migration', `${node.id} took in ${sessions(migratedIn - previous.migratedIn)}`);
        if (migratedOut > previous.migratedOut) this.event('migration', `${node.id} moved ${sessions(migratedOut - previous.migratedOut)} out`);
        if (evacuation !== previous.evacuation) this.event('evacuation', evacuation === 'running' ? `${node.id} is evacuating its sessions` : evacuation === 'done' ? `${node.id} has evacuated every session` : `${node.id} evacuation: ${evacuation}`);
      }
      this.#previous.set(key, { at: now, calls, requests, migratedIn, migratedOut, evacuation });
    }
    const member = coordinator?.members.find((entry) => entry.id === node.id)?.state ?? status?.members.find((entry) => entry.id === node.id)?.state ?? (node.state === 'running' ? 'unknown' : 'gone');
    return {
      id: node.id,
      index: node.index,
      process: node.state,
      pid: node.pid ?? null,
      incarnation: node.incarnation ?? null,
      member,
      coordinator: this.#coordinator === node.id,
      app: node.app ?? null,
      status: node.status ?? null,
      epoch: status?.epoch ?? 0,
      bucketsOwned: this.#layout?.ownerIds.filter((id) => id === node.id).length ?? 0,
      bucketsBackedUp: this.#layout?.backupIds.filter((id) => id === node.id).length ?? 0,
      handoffsPending: status?.buckets.handoffsPending ?? 0,
      sessions: { memory: status?.sessions.memory ?? 0, disk: status?.sessions.disk ?? 0 },
      requestsPerSec,
      callsPerSec,
      hops: status?.routing.hops ?? {},
      migratedIn,
      migratedOut,
      evacuation,
      http: app === undefined ? null : { tampered: app.sessions.tampered, redirected: app.sessions.redirected, expired: app.sessions.expired, created: app.sessions.created, failed: app.sessions.failed },
      reachable: status !== undefined,
    };
  }

  #processChanged(node: NodeProcess): void {
    const text: Record<NodeProcess['state'], string> = {
      starting: `${node.id} is starting`,
      running: `${node.id} is up (pid ${node.pid}, incarnation ${node.incarnation}), serving ${node.app}`,
      stopping: `${node.id} is leaving gracefully (SIGTERM)`,
      stopped: `${node.id} left the cluster and exited`,
      killed: `${node.id} was killed (SIGKILL)`,
      crashed: `${node.id} exited unexpectedly (code ${node.exitCode})`,
    };
    this.event('process', text[node.state]);
  }
}

function sessions(count: number): string {
  return count === 1 ? '1 session' : `${count} sessions`;
}

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    if (!response.ok) return undefined;
    return (await response.json()) as T;
  } catch {
    return undefined;
  }
}
