import { describe, expect, it } from 'vitest';
import { HandoffTracker, type ClusterMessage, type DirectoryEntry, type Layout } from '../src/index.js';

function layout(epoch: number, owners: string[]): Layout {
  const ids = [...new Set(owners)];
  return {
    epoch,
    buckets: owners.length,
    members: ids.map((id) => ({ id, incarnation: 1, url: `ws://${id}`, workers: 2 })),
    owners: owners.map((owner) => ids.indexOf(owner)),
    coordinator: ids[0]!,
    cluster: 'test@1',
  };
}

function tracker(options: { maxInFlight?: number; timeoutMs?: number; attempts?: number } = {}) {
  const sent: { to: string; message: ClusterMessage }[] = [];
  const installed: { bucket: number; epoch: number; entries: DirectoryEntry[]; source: string }[] = [];
  const t = new HandoffTracker(
    { self: 'd', ...options },
    {
      send: (to, message) => sent.push({ to, message }),
      install: (bucket, epoch, entries, source) => installed.push({ bucket, epoch, entries, source }),
      log: () => undefined,
    },
  );
  return { t, sent, installed };
}

describe('HandoffTracker', () => {
  it('pulls gained buckets from their live previous owners, at most K at a time', () => {
    const { t, sent, installed } = tracker({ maxInFlight: 2 });
    t.layoutCommitted(layout(2, ['d', 'd', 'd', 'b']), layout(1, ['a', 'a', 'b', 'b']), ['a', 'b', 'd']);
    t.tick(0);
    expect(sent.map((s) => [s.to, s.message.t, (s.message as { bucket: number }).bucket])).toEqual([
      ['a', 'handoff-request', 0],
      ['a', 'handoff-request', 1],
    ]);
    t.receive('a', { t: 'handoff-data', bucket: 0, epoch: 2, entries: [['cart\u0000x', 'a', 0, 0]] });
    t.tick(1);
    expect(sent.at(-1)).toEqual({ to: 'b', message: { t: 'handoff-request', bucket: 2, epoch: 2 } });
    expect(installed).toEqual([{ bucket: 0, epoch: 2, entries: [['cart\u0000x', 'a', 0, 0]], source: 'handoff' }]);
    expect(t.pending).toBe(2);
  });

  it('starts the next transfer as soon as one completes, without waiting for a tick', () => {
    const { t, sent, installed } = tracker({ maxInFlight: 2 });
    t.layoutCommitted(layout(2, Array(10).fill('d')), layout(1, Array(10).fill('a')), ['a', 'd']);
    t.tick(0);
    for (let bucket = 0; bucket < 10; bucket++) {
      expect(sent.filter((s) => s.message.t === 'handoff-request').length).toBe(Math.min(10, bucket + 2));
      t.receive('a', { t: 'handoff-data', bucket, epoch: 2, entries: [] });
    }
    expect(installed.length).toBe(10);
    expect(t.pending).toBe(0);
  });

  it('ignores data for another epoch or from another node, and duplicates', () => {
    const { t, installed } = tracker();
    t.layoutCommitted(layout(5, ['d']), layout(4, ['a']), ['a', 'd']);
    t.tick(0);
    t.receive('a', { t: 'handoff-data', bucket: 0, epoch: 4, entries: [] });
    t.receive('x', { t: 'handoff-data', bucket: 0, epoch: 5, entries: [] });
    expect(installed).toEqual([]);
    t.receive('a', { t: 'handoff-data', bucket: 0, epoch: 5, entries: [] });
    t.receive('a', { t: 'handoff-data', bucket: 0, epoch: 5, entries: [] });
    expect(installed.length).toBe(1);
  });

  it('retries a silent owner, then rebuilds from every live member', () => {
    const { t, sent, installed } = tracker({ timeoutMs: 100, attempts: 2 });
    t.layoutCommitted(layout(2, ['d']), layout(1, ['a']), ['a', 'b', 'c', 'd']);
    t.tick(0);
    t.tick(100);
    expect(sent.filter((s) => s.message.t === 'handoff-request').length).toBe(2);
    t.tick(200);
    const asked = sent.filter((s) => s.message.t === 'report-request').map((s) => s.to);
    expect(asked.sort()).toEqual(['a', 'b', 'c']);
    t.receive('b', { t: 'report', bucket: 0, epoch: 2, entries: [['s\u00001', 'b', 1, 0]] });
    t.receive('c', { t: 'report', bucket: 0, epoch: 2, entries: [] });
    expect(installed).toEqual([]);
    t.membersChanged(['b', 'c', 'd']);
    expect(installed).toEqual([{ bucket: 0, epoch: 2, entries: [['s\u00001', 'b', 1, 0]], source: 'rebuild' }]);
    expect(t.rebuilt).toBe(1);
  });

  it('rebuilds at once when the previous owner is down, and on refusal', () => {
    const { t, sent, installed } = tracker();
    t.layoutCommitted(layout(3, ['d', 'd']), layout(2, ['gone', 'a']), ['a', 'd']);
    t.tick(0);
    expect(sent.map((s) => `${s.to}:${s.message.t}:${(s.message as { bucket: number }).bucket}`).sort()).toEqual(['a:handoff-request:1', 'a:report-request:0']);
    t.receive('a', { t: 'handoff-refused', bucket: 1, epoch: 3, reason: 'it holds epoch 4' });
    t.tick(1);
    t.receive('a', { t: 'report', bucket: 0, epoch: 3, entries: [] });
    t.receive('a', { t: 'report', bucket: 1, epoch: 3, entries: [] });
    expect(installed.map((i) => `${i.bucket}:${i.source}`).sort()).toEqual(['0:rebuild', '1:rebuild']);
  });

  it('a newer layout drops transfers for buckets lost again; the rest go on pulling under the epoch that moved them', () => {
    const { t, sent, installed } = tracker();
    t.layoutCommitted(layout(2, ['d', 'd']), layout(1, ['a', 'a']), ['a', 'd']);
    t.layoutCommitted(layout(3, ['a', 'd']), layout(2, ['d', 'd']), ['a', 'd']);
    expect(t.isPending(0)).toBe(false);
    t.tick(0);
    expect(sent.map((s) => s.message)).toEqual([{ t: 'handoff-request', bucket: 1, epoch: 2 }]);
    t.receive('a', { t: 'handoff-data', bucket: 1, epoch: 3, entries: [] });
    expect(installed).toEqual([]);
    t.receive('a', { t: 'handoff-data', bucket: 1, epoch: 2, entries: [] });
    expect(installed.map((i) => [i.epoch, i.source])).toEqual([[3, 'handoff']]);
  });

  it('a pull under way when a later layout keeps the bucket here is answered, not rebuilt', () => {
    const { t, sent, installed } = tracker();
    t.layoutCommitted(layout(2, ['d', 'd']), layout(1, ['a', 'a']), ['a', 'd']);
    t.tick(0);
    expect(sent.map((s) => s.message)).toEqual([
      { t: 'handoff-request', bucket: 0, epoch: 2 },
      { t: 'handoff-request', bucket: 1, epoch: 2 },
    ]);
    // The layout that drops the leaver from the members comes while both pulls are under way.
    t.layoutCommitted(layout(3, ['d', 'd']), layout(2, ['d', 'd']), ['a', 'd']);
    t.receive('a', { t: 'handoff-data', bucket: 0, epoch: 2, entries: [['s\u00001', 'x', 0, 7]] });
    t.tick(2000);
    expect(sent.at(-1)).toEqual({ to: 'a', message: { t: 'handoff-request', bucket: 1, epoch: 2 } });
    t.receive('a', { t: 'handoff-data', bucket: 1, epoch: 2, entries: [] });
    expect(installed).toEqual([
      { bucket: 0, epoch: 3, entries: [['s\u00001', 'x', 0, 7]], source: 'handoff' },
      { bucket: 1, epoch: 3, entries: [], source: 'handoff' },
    ]);
    expect(t.rebuilt).toBe(0);
    expect(sent.some((s) => s.message.t === 'report-request')).toBe(false);
  });

  it('a new cluster installs empty directories without asking anyone', () => {
    const { t, sent, installed } = tracker();
    t.layoutCommitted(layout(1, ['d', 'd', 'd']), null, ['d']);
    t.tick(0);
    expect(sent).toEqual([]);
    expect(installed.map((i) => i.source)).toEqual(['new', 'new', 'new']);
  });
});
