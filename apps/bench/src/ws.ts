/**
 * The `ws` package for the raw WebSocket baselines, loaded from where `@wadi/node` resolves it:
 * the baseline then runs on the very same WebSocket implementation (and version) as the cluster
 * transport it is compared to, and the bench needs no dependency of its own for it. Only the
 * part of its API the baselines use is typed here.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface WsSocket {
  readonly readyState: number;
  send(data: Uint8Array, options: { binary: boolean }): void;
  on(event: 'message', listener: (data: unknown) => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  on(event: 'close', listener: (code: number) => void): this;
  once(event: 'open', listener: () => void): this;
  once(event: 'error', listener: (error: Error) => void): this;
  close(): void;
  terminate(): void;
}

export interface WsServer {
  on(event: 'connection', listener: (socket: WsSocket) => void): this;
  on(event: 'listening', listener: () => void): this;
  address(): { port: number } | string | null;
  close(): void;
}

export interface WsModule {
  WebSocket: new (url: string, options?: { perMessageDeflate?: boolean }) => WsSocket;
  WebSocketServer: new (options: { host: string; port: number; perMessageDeflate?: boolean }) => WsServer;
}

export function loadWs(): WsModule {
  const nodePackage = fileURLToPath(import.meta.resolve('@wadi/node'));
  return createRequire(nodePackage)('ws') as WsModule;
}
