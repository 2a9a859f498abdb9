/**
 * A private, throw-away PostgreSQL server for tests and benchmarks, started from Debian's
 * server binaries (`/usr/lib/postgresql/<major>/bin`, package `postgresql`): `initdb` into a
 * fresh temporary directory, `pg_ctl start` listening on 127.0.0.1 at a free port with its unix
 * socket in that directory, and on `stop()` the server is stopped and the directory deleted.
 * As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
 *
 * With `WADI_PG_URL` set, nothing is started: that server is used and `stop()` does nothing.
 * Without binaries it fails, saying how to install them: the store's tests never skip.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const DEBIAN_ROOT = '/usr/lib/postgresql';

export interface PostgresServer {
  /** Connection URL (user `wadi`, database `postgres`, trust authentication on loopback). */
  readonly url: string;
  /** Data directory, when this process started the server. */
  readonly dataDir: string | undefined;
  /** Stops the server and deletes its directory (nothing for an external `WADI_PG_URL`). */
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /**
   * Trade durability for speed (`fsync=off`, `synchronous_commit=off`, `full_page_writes=off`):
   * right for tests, whose server dies with them. Off by default, so benchmarks measure a
   * server that syncs its commits as a real one does.
   */
  fast?: boolean;
  /** Ignore `WADI_PG_URL` and always start a private server. */
  private?: boolean;
}

/** Directory holding `initdb`, `pg_ctl` and `postgres` of the newest installed major version. */
export function findPostgresBinaries(root = DEBIAN_ROOT): string {
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((name) => existsSync(join(root, name, 'bin', 'postgres')) && existsSync(join(root, name, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const newest = majors[0];
  if (newest === undefined) {
    throw new Error(
      `PostgreSQL server binaries not found (looked for ${root}/*/bin/postgres). The store's tests and ` +
        'benchmarks start a private PostgreSQL: install Debian\'s package with ' +
        '`apt-get install -y --no-install-recommends postgresql` (.ci/run does this), or set WADI_PG_URL to a server to use.',
    );
  }
  return join(root, newest, 'bin');
}

export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const external = process.env['WADI_PG_URL'];
  if (external !== undefined && external !== '' && options.private !== true) {
    return { url: external, dataDir: undefined, stop: async () => undefined };
  }
  const bin = findPostgresBinaries();
  const dir = mkdtempSync(join(tmpdir(), 'wadi-pg-'));
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUser() : undefined;
  if (owner !== undefined) chownSync(dir, owner.uid, owner.gid);
  const exec = (file: string, args: string[]): Promise<{ stdout: string; stderr: string }> =>
    owner === undefined ? run(join(bin, file), args) : run('runuser', ['-u', 'postgres', '--', join(bin, file), ...args]);
  const dataDir = join(dir, 'data');
  try {
    await exec('initdb', ['-D', dataDir, '-U', 'wadi', '--auth=trust', '--encoding=UTF8', '--no-sync', '--no-instructions']);
    const settings = ['-c listen_addresses=127.0.0.1', `-k ${dir}`, '-c max_connections=100'];
    if (options.fast === true) settings.push('-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off');
    // A free port can be taken by someone else before the server binds it: try a few.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      try {
        await exec('pg_ctl', ['start', '-D', dataDir, '-w', '-t', '60', '-l', join(dir, 'server.log'), '-o', [...settings, `-p ${port}`].join(' ')]);
        const server: PostgresServer = {
          url: `postgres://wadi@127.0.0.1:${port}/postgres`,
          dataDir,
          stop: async () => {
            try {
              await exec('pg_ctl', ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '60']);
            } finally {
              rmSync(dir, { recursive: true, force: true });
            }
          },
        };
        return server;
      } catch (error) {
        if (attempt >= 3) throw withLog(error, dir);
      }
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('postgres:'));
  const fields = line?.split(':');
  if (fields === undefined || fields.length < 4) {
    throw new Error('running as root, but there is no `postgres` user to run PostgreSQL as (Debian\'s postgresql package creates it)');
  }
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function withLog(error: unknown, dir: string): Error {
  let log = '';
  try {
    log = readFileSync(join(dir, 'server.log'), 'utf8').slice(-2000);
  } catch {
    // No log: the server never got as far as writing one.
  }
  const message = error instanceof Error ? error.message : String(error);
  return new Error(`could not start PostgreSQL: ${message}${log === '' ? '' : `\nserver log:\n${log}`}`, { cause: error });
}
