/**
 * The coordinator is not a single point of failure: when it crashes, the next oldest member takes
 * over from the highest committed epoch, and the crashed node, restarted on its data directory,
 * comes back as a new incarnation and a member again.
 *
 * The steps share one cluster and run in order.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  FAST_TIMINGS,
  killNode,
  restartNode,
  startNode,
  status,
  tempDir,
  waitFor,
  waitForAgreement,
  type Agreement,
  type NodeProcess,
} from './helpers.js';

interface NodeFile {
  id: string;
  incarnation: number;
}

interface ClusterFile {
  committed: { epoch: number; members: { id: string; incarnation: number }[] } | null;
  accepted: { epoch: number } | null;
}

function readNodeFile(dir: string): NodeFile {
  return JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8')) as NodeFile;
}

function readClusterFile(dir: string): ClusterFile {
  return JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as ClusterFile;
}

describe('coordinator failover and restart on a data directory', () => {
  let n1: NodeProcess;
  let n2: NodeProcess;
  let n3: NodeProcess;
  let formed: Agreement;
  let failedOver: Agreement;

  it('three nodes with data directories form a cluster; each directory holds node.json and the committed epoch', async () => {
    n1 = await startNode({ name: 'n1', dataDir: tempDir(), extraArgs: FAST_TIMINGS });
    await waitFor(async () => (await status(n1)).epoch > 0, { what: 'n1 to form a cluster' });
    // One at a time, so that n2 is the second oldest member.
    n2 = await startNode({ name: 'n2', seeds: [n1], dataDir: tempDir(), extraArgs: FAST_TIMINGS });
    await waitForAgreement([n1, n2]);
    n3 = await startNode({ name: 'n3', seeds: [n1], dataDir: tempDir(), extraArgs: FAST_TIMINGS });
    formed = await waitForAgreement([n1, n2, n3]);
    expect(formed.coordinator).toBe(n1.id);

    for (const node of [n1, n2, n3]) {
      const s = formed.statuses.get(node)!;
      expect(readNodeFile(node.dataDir!)).toEqual({ id: node.id, incarnation: s.incarnation });
      // cluster.json is written before a commit is acknowledged, so it is never behind /status.
      const committed = readClusterFile(node.dataDir!).committed;
      expect(committed?.epoch).toBe(formed.epoch);
      expect(committed?.members.map((member) => member.id).sort()).toEqual([n1.id, n2.id, n3.id].sort());
    }
  });

  it('when the coordinator crashes, the next oldest member takes over and commits a higher epoch', async () => {
    await killNode(n1);
    failedOver = await waitForAgreement([n2, n3]);
    expect(failedOver.coordinator).toBe(n2.id);
    expect(failedOver.epoch).toBeGreaterThan(formed.epoch);
    expect(failedOver.ownerIds).not.toContain(n1.id);
    for (const s of failedOver.statuses.values()) {
      expect(s.members.find((member) => member.id === n1.id)?.state).toBe('down');
    }
    for (const node of [n2, n3]) expect(readClusterFile(node.dataDir!).committed?.epoch).toBe(failedOver.epoch);
    // The crashed node's directory still holds what it had committed.
    expect(readClusterFile(n1.dataDir!).committed?.epoch).toBe(formed.epoch);
  });

  it('the crashed node restarts on its data directory as a new incarnation and rejoins', async () => {
    const oldIncarnation = formed.statuses.get(n1)!.incarnation;
    // The same command line as before (n1 was started without seeds): its committed layout names the others.
    const restarted = await restartNode(n1, 'n1 (restarted)');
    const all = await waitForAgreement([restarted, n2, n3]);

    const s = all.statuses.get(restarted)!;
    expect(s.id).toBe(n1.id);
    expect(s.incarnation).toBe(oldIncarnation + 1);
    expect(readNodeFile(n1.dataDir!)).toEqual({ id: n1.id, incarnation: oldIncarnation + 1 });
    // It is a new member: the others list the new incarnation as up, the layout has it back.
    for (const other of [n2, n3]) {
      const entry = all.statuses.get(other)!.members.find((member) => member.id === n1.id);
      expect(entry).toMatchObject({ state: 'up', incarnation: oldIncarnation + 1 });
    }
    expect(all.layout.members.find((member) => member.id === n1.id)?.incarnation).toBe(oldIncarnation + 1);
    expect(all.epoch).toBeGreaterThan(failedOver.epoch);
    // Leadership does not flap back: the restarted node is now the youngest member (oldest-member election).
    expect(all.coordinator, 'the restarted node must rejoin as the youngest member, not take the coordinator role back').toBe(n2.id);
    expect(readClusterFile(n1.dataDir!).committed?.epoch).toBe(all.epoch);
  });
});
