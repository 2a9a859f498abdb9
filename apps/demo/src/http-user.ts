/**
 * One simulated browser for the load generator and the benchmark: it keeps the cookies it is
 * given, sends them to whichever node it calls, follows 307 redirects, and, like a load
 * balancer, tries another node when one refuses the connection (a node that has left, or was
 * killed): such a request was never received, so sending it elsewhere cannot apply it twice.
 */
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';

export interface UserReply {
  status: number;
  body: unknown;
  /** The node that answered (`x-wadi-node`), if it said. */
  node: string | undefined;
  /** Redirects followed and nodes tried again. */
  redirects: number;
  retries: number;
}

export interface Targets {
  /** A base URL to send the next request to. */
  pick(): string | undefined;
  /** `url` refused a connection: avoid it for a while. */
  refused(url: string): void;
}

const MAX_REDIRECTS = 3;
const MAX_RETRIES = 8;

/** Errors that prove the request never reached a server's handler. */
function neverSent(error: NodeJS.ErrnoException, reused: boolean): boolean {
  return error.code === 'ECONNREFUSED' || (reused && (error.code === 'ECONNRESET' || error.code === 'EPIPE'));
}

export class HttpUser {
  readonly #cookies = new Map<string, string>();

  constructor(
    readonly agent: Agent,
    readonly targets: Targets,
  ) {}

  /** The value of cookie `name`, as the server last set it. */
  cookie(name: string): string | undefined {
    return this.#cookies.get(name);
  }

  forgetCookies(): void {
    this.#cookies.clear();
  }

  async request(method: string, path: string, body?: unknown): Promise<UserReply> {
    let retries = 0;
    let redirects = 0;
    let url: string | undefined;
    for (;;) {
      const base = url === undefined ? this.targets.pick() : undefined;
      const target = url ?? (base === undefined ? undefined : base + path);
      if (target === undefined) throw Object.assign(new Error('no node to send to'), { code: 'ENOTARGET' });
      try {
        const reply = await this.#send(method, target, body);
        if (reply.status === 307 && typeof reply.headers.location === 'string' && redirects < MAX_REDIRECTS) {
          redirects++;
          url = reply.headers.location;
          continue;
        }
        return { status: reply.status, body: reply.body, node: header(reply.headers, 'x-wadi-node'), redirects, retries };
      } catch (error) {
        const failure = error as NodeJS.ErrnoException & { reused?: boolean };
        if (!neverSent(failure, failure.reused === true) || retries >= MAX_RETRIES) throw error;
        retries++;
        if (failure.code === 'ECONNREFUSED') this.targets.refused(new URL(target).origin);
        // A redirect target that went away: start over from any node.
        url = undefined;
      }
    }
  }

  #send(method: string, url: string, body: unknown): Promise<{ status: number; headers: IncomingHttpHeaders; body: unknown }> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (this.#cookies.size > 0) headers['cookie'] = [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    return new Promise((resolve, reject) => {
      const req = httpRequest(url, { method, headers, agent: this.agent }, (res) => {
        for (const line of res.headers['set-cookie'] ?? []) this.#remember(line);
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          if ((res.headers['content-type'] ?? '').includes('json')) {
            try {
              parsed = JSON.parse(text);
            } catch {
              // Keep the text: the caller reports it.
            }
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
        });
      });
      req.on('error', (error) => reject(Object.assign(error, { reused: req.reusedSocket })));
      req.end(payload);
    });
  }

  #remember(line: string): void {
    const pair = line.split(';', 1)[0]!;
    const equals = pair.indexOf('=');
    if (equals <= 0) return;
    const name = pair.slice(0, equals).trim();
    const value = pair.slice(equals + 1).trim();
    if (/;\s*max-age=0/i.test(line) || value === '') this.#cookies.delete(name);
    else this.#cookies.set(name, value);
  }
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Targets from a list that can change (the nodes serving now); refusing nodes are skipped for a second. */
export class TargetList implements Targets {
  #urls: string[] = [];
  readonly #refusedUntil = new Map<string, number>();
  #next = 0;

  set(urls: readonly string[]): void {
    this.#urls = [...urls];
  }

  get urls(): readonly string[] {
    return this.#urls;
  }

  pick(): string | undefined {
    const now = performance.now();
    const healthy = this.#urls.filter((url) => (this.#refusedUntil.get(url) ?? 0) <= now);
    const from = healthy.length > 0 ? healthy : this.#urls;
    if (from.length === 0) return undefined;
    return from[this.#next++ % from.length];
  }

  refused(url: string): void {
    this.#refusedUntil.set(url, performance.now() + 1_000);
  }
}
