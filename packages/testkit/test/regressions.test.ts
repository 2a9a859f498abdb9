/**
 * Every schedule the simulator found a bug with, shrunk, kept as a regression test. Each names
 * what was wrong and where it was fixed; `pnpm sim:replay '<schedule>'` prints its trace.
 */
import { describe, expect, it } from 'vitest';
import { describeFailure, runSchedule, type Schedule, type Step } from '../src/index.js';

/** Three nodes start half a second apart and form a cluster (what every property run starts with). */
const formed: Step[] = [
  { op: 'start', node: 'n1' },
  { op: 'run', ms: 500 },
  { op: 'start', node: 'n2' },
  { op: 'run', ms: 500 },
  { op: 'start', node: 'n3' },
  { op: 'run', ms: 500 },
  { op: 'run', ms: 5000 },
];

const options = (seed: number, extra: Partial<Schedule['options']> = {}): Schedule['options'] => ({ seed, buckets: 64, seeds: ['n1', 'n2', 'n3'], ...extra });

const found: { name: string; schedule: Schedule }[] = [
  {
    name: 'a restarted node waited forever to hand off buckets its earlier incarnation owned (NodeProtocol: only this incarnation hands off)',
    schedule: {
      options: { seed: 7 },
      steps: [
        { op: 'start', node: 'n1' },
        { op: 'run', ms: 500 },
        { op: 'start', node: 'n2' },
        { op: 'run', ms: 500 },
        { op: 'start', node: 'n3' },
        { op: 'run', ms: 5000 },
        { op: 'create', node: 'n2', count: 30 },
        { op: 'run', ms: 1000 },
        { op: 'start', node: 'n4' },
        { op: 'crash', node: 'n1' },
        { op: 'run', ms: 3000 },
        { op: 'move', pick: 3, to: 'n4' },
        { op: 'leave', node: 'n2' },
        { op: 'run', ms: 4000 },
      ],
    },
  },
  {
    name: 'a registration that could not reach the bucket owner (partition) was never repaired (NodeProtocol re-announces such buckets)',
    schedule: { options: options(1), steps: [...formed, { op: 'partition', side: ['n1'] }, { op: 'create', node: 'n1', count: 1 }] },
  },
  {
    name: "a node restarted faster than the failure detector left its earlier incarnation's sessions in the directories (BucketHost syncs every bucket on its first layout)",
    schedule: { options: options(1), steps: [...formed, { op: 'create', node: 'n1', count: 1 }, { op: 'run', ms: 10 }, { op: 'crash', node: 'n1' }] },
  },
  {
    name: "a sync that reached a bucket's new owner before the handed-off snapshot was undone by it (BucketDirectory filters the snapshot by earlier syncs)",
    schedule: { options: options(1), steps: [...formed, { op: 'create', node: 'n3', count: 1 }, { op: 'run', ms: 10 }, { op: 'start', node: 'n5' }, { op: 'crash', node: 'n3' }] },
  },
  {
    name: 'a leaver was dropped from the layout while another member was unreachable, leaving a two-member layout that could never change again (ClusterMember keeps up voters while a suspect is unresolved)',
    schedule: { options: options(471402349), steps: [...formed, { op: 'partition', side: ['n2', 'n1'] }, { op: 'leave', node: 'n1' }, { op: 'leave', node: 'n3' }] },
  },
  {
    name: 'an update sent across a one-way cut that healed before the connection died must arrive (TCP holds it)',
    schedule: { options: options(1), steps: [...formed, { op: 'create', node: 'n1', count: 1 }, { op: 'cut', from: ['n1'], to: ['n2'] }, { op: 'run', ms: 10 }] },
  },
  {
    name: 'updates dropped while the owner was paused were lost when its bucket moved before they were re-sent (they are re-announced to the current owner)',
    schedule: { options: options(1), steps: [...formed, { op: 'pause', node: 'n2', ms: 500 }, { op: 'start', node: 'n5' }, { op: 'create', node: 'n5', count: 1 }, { op: 'run', ms: 400 }] },
  },
  {
    name: 'two crashes and a leave from the minority: the restarted nodes must form again from what they remember (ClusterMember: any node with a remembered layout may form)',
    schedule: { options: options(1), steps: [...formed, { op: 'crash', node: 'n1' }, { op: 'run', ms: 1256 }, { op: 'crash', node: 'n2' }, { op: 'leave', node: 'n3' }] },
  },
  {
    name: 'the last node of a cluster restarted alone waited forever for the first seed (ClusterMember: any node with a remembered layout may form)',
    schedule: { options: options(1), steps: [...formed, { op: 'leave', node: 'n1' }, { op: 'leave', node: 'n3' }, { op: 'run', ms: 303 }, { op: 'leave', node: 'n2' }, { op: 'run', ms: 200 }] },
  },
  {
    name: 'a whole cluster restarting at once elected three coordinators forever (ClusterMember adopts the admission number others gave it)',
    schedule: { options: options(4), steps: [...formed, { op: 'crash', node: 'n1' }, { op: 'crash', node: 'n2' }, { op: 'crash', node: 'n3' }] },
  },
  {
    name: "a bucket rebuilt without an unreachable member's report never got that member's sessions, and the member waited forever to hand it off (HandoffTracker asks again)",
    schedule: { options: options(1), steps: [...formed, { op: 'cut', from: ['n3'], to: ['n6'] }, { op: 'start', node: 'n6' }, { op: 'run', ms: 3307 }, { op: 'run', ms: 7093 }] },
  },
  {
    name: 'a duplicated proposal accepted again after its commit is idempotent, not stale (safety monitor)',
    schedule: {
      options: options(2047655288, { faults: { latencyMs: [1, 10], jitterMs: 30, loss: 0.03, duplicate: 0.03, reorder: true, reset: 0.0005 } }),
      steps: [...formed, { op: 'start', node: 'n6' }, { op: 'run', ms: 369 }],
    },
  },
  {
    name: 'a coordinator plans from a layout only its crashed predecessor had accepted; its moves are minimal from that one (safety monitor)',
    schedule: { options: options(1311501323), steps: [...formed, { op: 'start', node: 'n4' }, { op: 'run', ms: 208 }, { op: 'leave', node: 'n1' }] },
  },
  {
    name: 'a joiner that had only learned a layout formed a cluster of its own from it, taking every bucket and stranding the restarted members (ClusterMember: only a member of the remembered layout may form)',
    schedule: {
      options: options(1, { faults: { latencyMs: [1, 10], jitterMs: 30, loss: 0.03, duplicate: 0.03, reorder: true, reset: 0.0005 } }),
      steps: [...formed, { op: 'pause', node: 'n2', ms: 2501 }, { op: 'start', node: 'n6' }, { op: 'leave', node: 'n1' }, { op: 'leave', node: 'n3' }, { op: 'run', ms: 6000 }],
    },
  },
  {
    name: 'a coordinator plans from a layout it accepted but could not send to anyone; its moves are minimal from that one (safety monitor)',
    schedule: { options: options(1), steps: [...formed, { op: 'crash', node: 'n2' }, { op: 'run', ms: 654 }, { op: 'partition', side: ['n1'] }, { op: 'run', ms: 4946 }] },
  },
  {
    name: 'a node waited forever to hand off a bucket whose successor never asked for it before the bucket moved on again (NodeProtocol: only the latest loss can be pulled)',
    schedule: {
      options: options(1, { faults: { latencyMs: [1, 10], jitterMs: 30, loss: 0.03, duplicate: 0.03, reorder: true, reset: 0.0005 } }),
      steps: [...formed, { op: 'crash', node: 'n3' }, { op: 'cut', from: ['n6', 'n5'], to: ['n2', 'n3'] }, { op: 'start', node: 'n6' }, { op: 'run', ms: 4857 }, { op: 'run', ms: 7243 }],
    },
  },
  {
    name: "an update was sent to a restarted owner's new incarnation, which kept it without owning anything yet (NodeProtocol sends only to the layout's incarnation)",
    schedule: {
      options: options(1, { faults: { latencyMs: [1, 10], jitterMs: 30, loss: 0.03, duplicate: 0.03, reorder: true, reset: 0.0005 } }),
      steps: [...formed, { op: 'partition', side: ['n2', 'n6'] }, { op: 'start', node: 'n6' }, { op: 'run', ms: 1100 }, { op: 'create', node: 'n6', count: 1 }, { op: 'crash', node: 'n2' }],
    },
  },
  {
    name: 'a node restarted after every node it knew had left could not find the cluster (the simulation now lists running nodes as seeds, as a discovery service does)',
    schedule: { options: options(1), steps: [...formed, { op: 'start', node: 'n4' }, { op: 'crash', node: 'n2' }, { op: 'run', ms: 200 }, { op: 'leave', node: 'n3' }, { op: 'leave', node: 'n1' }, { op: 'run', ms: 1300 }] },
  },
  {
    name: 'every up member left while a joiner waited: the last leave is given up after its timeout and the restarted node forms again (slow: about 65 s)',
    schedule: {
      options: options(1, { faults: { latencyMs: [1, 10], jitterMs: 30, loss: 0.03, duplicate: 0.03, reorder: true, reset: 0.0005 } }),
      steps: [...formed, { op: 'leave', node: 'n3' }, { op: 'leave', node: 'n1' }, { op: 'start', node: 'n6' }, { op: 'leave', node: 'n2' }],
    },
  },
  {
    name: 'SAFETY: a coordinator committed alone a layout planned from its own merely accepted proposal (ClusterMember: joint majority of that base and of the last committed layout)',
    schedule: { options: options(2094932658), steps: [...formed, { op: 'leave', node: 'n3' }, { op: 'run', ms: 175 }, { op: 'leave', node: 'n1' }] },
  },
];

describe('schedules the simulator found bugs with', () => {
  for (const { name, schedule } of found) {
    it(name, () => {
      const result = runSchedule(schedule);
      if (result.violations.length > 0) throw new Error(describeFailure(schedule, result));
      expect(result.settledAfterMs).toBeDefined();
    });
  }
});
