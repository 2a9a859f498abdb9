/**
 * Turns what a storage engine throws when it runs out of room into `StoreFull`, whatever the
 * engine's way of saying it: LMDB's MDB_MAP_FULL, the OS's ENOSPC / EFBIG / EDQUOT on a write
 * (lmdb-js hides those behind "Commit failed" with a `commitError` promise), PostgreSQL's
 * SQLSTATE 53100 (disk_full). LMDB reports a page write cut short (what a disk that fills up
 * mid-write does) as EIO, so EIO from a commit counts as full too: either way the transaction
 * wrote nothing, what was committed before is intact, and the caller should stop writing to
 * this tier until a later write succeeds. Anything else is returned unchanged.
 */
import { StoreFull } from '../errors.js';

const FULL_ERRNOS = new Set([5 /* EIO: a short write */, 27 /* EFBIG */, 28 /* ENOSPC */, 122 /* EDQUOT */, -30792 /* MDB_MAP_FULL */]);
const FULL_CODES = new Set(['EIO', 'EFBIG', 'ENOSPC', 'EDQUOT', 'MDB_MAP_FULL', '53100']);
const FULL_MESSAGE = /MDB_MAP_FULL|No space left|File too large|quota exceeded|could not extend file/i;

function isFull(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'number' && FULL_ERRNOS.has(code)) return true;
  if (typeof code === 'string' && FULL_CODES.has(code)) return true;
  return FULL_MESSAGE.test(error.message);
}

/** The underlying error of an lmdb-js commit failure, or the error itself. */
async function rootCause(error: unknown): Promise<unknown> {
  const commitError = (error as { commitError?: unknown } | undefined)?.commitError;
  if (commitError instanceof Promise) {
    try {
      await commitError;
    } catch (cause) {
      return cause;
    }
  }
  return error;
}

/** `StoreFull` when `error` says the storage is out of room, else the most precise error known. */
export async function storageError(error: unknown, tier: string): Promise<Error> {
  const cause = await rootCause(error);
  if (isFull(cause) || isFull(error)) return new StoreFull(tier, (cause as Error).message, { cause });
  return cause instanceof Error ? cause : new Error(String(cause));
}

/** Synchronous variant for errors that carry their cause directly (PostgreSQL). */
export function storageErrorSync(error: unknown, tier: string): Error {
  if (isFull(error)) return new StoreFull(tier, (error as Error).message, { cause: error });
  return error instanceof Error ? error : new Error(String(error));
}
