/**
 * Who coordinates: a pluggable policy over the member table. Any member can be elected because the
 * coordinator holds no state that only it has; safety comes from majority commits, not from the
 * election, so two nodes briefly disagreeing about the coordinator cannot commit two layouts.
 */
import type { MemberEntry } from './membership.js';

export interface ElectionPolicy {
  readonly name: string;
  /** The id of the coordinator among `members` (all gossiped entries), or undefined if none is eligible. */
  elect(members: readonly MemberEntry[]): string | undefined;
}

/**
 * The default: the oldest member that is up (lowest admission number, ties broken by id). A
 * leaving member is not eligible, so the next oldest plans the leaver's drain.
 */
export const oldestMember: ElectionPolicy = {
  name: 'oldest',
  elect(members) {
    let best: MemberEntry | undefined;
    for (const member of members) {
      if (member.state !== 'up' || member.upNumber < 1) continue;
      if (best === undefined || member.upNumber < best.upNumber || (member.upNumber === best.upNumber && member.id < best.id)) best = member;
    }
    return best?.id;
  },
};
