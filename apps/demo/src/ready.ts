/**
 * The one line a demo node prints once it serves: how the supervisor learns its URLs.
 */
export const READY_PREFIX = 'WADI_DEMO_READY ';

export interface ReadyInfo {
  id: string;
  incarnation: number;
  pid: number;
  /** Cluster URL (`ws://`). */
  ws: string;
  /** Status endpoint (`GET /status`, `/layout`). */
  status: string;
  /** The shop. */
  app: string;
}

export function readyLine(info: ReadyInfo): string {
  return `${READY_PREFIX}${JSON.stringify(info)}`;
}

/** The info in a line of a node's output, or undefined if it is another line. */
export function parseReady(line: string): ReadyInfo | undefined {
  if (!line.startsWith(READY_PREFIX)) return undefined;
  return JSON.parse(line.slice(READY_PREFIX.length)) as ReadyInfo;
}
