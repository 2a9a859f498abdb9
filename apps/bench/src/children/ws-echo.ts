/**
 * Child process for the raw WebSocket baselines: a `ws` server on loopback that decodes every
 * message and sends it straight back, one WebSocket message per message (no batching), as the
 * echo worker does for postMessage. Decoding and re-encoding with wadi's codec is the least an
 * RPC server does with a request, so the floor includes it, and nothing more.
 *
 * usage: fork(ws-echo.js); it sends `{ port }` over IPC once it listens, and exits when the IPC
 * channel closes.
 */
import { decode, encode } from '@wadi/core';
import { loadWs } from '../ws.js';

const { WebSocketServer } = loadWs();
const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
server.on('connection', (socket) => {
  socket.on('message', (data) => socket.send(encode(decode(data as Uint8Array)), { binary: true }));
});
server.on('listening', () => {
  const address = server.address();
  process.send?.({ port: typeof address === 'object' && address !== null ? address.port : 0 });
});
process.on('disconnect', () => process.exit(0));
