/**
 * @wadi/http: HTTP sessions over a wadi cluster. `httpSessions(options)` is a `(req, res, next)`
 * middleware (Express, Connect, node:http) that keeps each client's `req.session` in a session
 * actor of the client's group; nodes load `HTTP_ACTORS` to host it.
 */
export { httpSessions, sessionOf, type HttpSessionOptions, type HttpSessionStats, type HttpSessions, type SessionRequest } from './middleware.js';
export { Session } from './session.js';
export { DurableHttpSession, HTTP_ACTORS, HTTP_APPS_ID, HttpApps, HttpSession, type HttpSessionType } from './actors.js';
export { DEFAULT_IDLE_TIMEOUT_MS, isExpired } from './expiry.js';
export { SessionBusy } from './turns.js';
export { CookieSigner, newSessionId } from './cookie.js';
export { fastifySessions, type FastifyLike, type FastifyRequestLike, type FastifySessionsPlugin } from './fastify.js';
