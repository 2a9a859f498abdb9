/**
 * The Fastify adapter: `app.register(fastifySessions(sessions))` runs the session middleware on
 * every request's raw Node request and response and gives routes `request.session`. Fastify
 * writes all the headers before the body, so the session is saved in `onSend`, before anything is
 * written: a save that fails becomes the response (through Fastify's error handling), as with
 * Express. Fastify is not a dependency: the adapter uses only `addHook` and `decorateRequest`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpSessions, SessionRequest } from './middleware.js';
import type { Session } from './session.js';

/** The part of a Fastify request the adapter reads. */
export interface FastifyRequestLike {
  raw: IncomingMessage;
}

/** The part of a Fastify instance the adapter uses. */
export interface FastifyLike {
  decorateRequest(name: 'session', value: { getter(this: FastifyRequestLike): Session | undefined }): unknown;
  addHook(name: 'onRequest', hook: (request: FastifyRequestLike, reply: { raw: ServerResponse }, done: (error?: Error) => void) => void): unknown;
  addHook(name: 'onSend', hook: (request: FastifyRequestLike, reply: { raw: ServerResponse }, payload: unknown) => Promise<unknown>): unknown;
}

export type FastifySessionsPlugin = ((fastify: FastifyLike, options: unknown, done: (error?: Error) => void) => void) & { [key: symbol]: unknown };

/**
 * A Fastify plugin for `sessions` (from `httpSessions(options)`). It applies to the instance it is
 * registered on and every route of it, like Express's `app.use(sessions)`.
 */
export function fastifySessions(sessions: HttpSessions): FastifySessionsPlugin {
  const plugin = ((fastify, _options, done) => {
    // A getter, so `request.session` follows `regenerate()` and `destroy()`.
    fastify.decorateRequest('session', {
      getter() {
        return (this.raw as SessionRequest).session;
      },
    });
    fastify.addHook('onRequest', (request, reply, next) => {
      sessions(request.raw, reply.raw, (error) => (error === undefined ? next() : next(error instanceof Error ? error : new Error(String(error)))));
    });
    // Before Fastify writes the headers; a failed save throws, and Fastify answers with its status.
    fastify.addHook('onSend', async (request, _reply, payload) => {
      await sessions.finish(request.raw);
      return payload;
    });
    done();
  }) as FastifySessionsPlugin;
  // Not encapsulated (what fastify-plugin does): the hook applies where the plugin is registered.
  plugin[Symbol.for('skip-override')] = true;
  return plugin;
}
