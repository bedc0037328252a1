import { auditActor } from '@steward/core/resources';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Resources } from '@steward/core/resources';
import { AppError } from '@steward/core/errors/app-error';
import { isPermission } from '@steward/core/identity/permissions';
import { sendError } from './error-handler.ts';
import { actorOf } from './request-actor.ts';

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  return match?.[1];
}

/**
 * Authentication and default-deny authorization for every route, from the route's declared access.
 * Runs before the body is parsed, so unauthenticated requests cost little.
 */
export function installAuthentication(app: FastifyInstance, res: Resources): void {
  app.decorateRequest('principal', undefined);
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const url = request.routeOptions.url;
    if (!url) return; // unmatched: the not-found handler answers
    const access = request.routeOptions.config.access;
    if (!url.startsWith('/api/')) {
      if (access !== undefined && access !== 'public') throw new AppError('INTERNAL', 'misdeclared route');
      return;
    }
    if (access === undefined) {
      request.log.error({ route: url }, 'route declares no access: denied by default');
      return sendError(reply, 'FORBIDDEN', 'this route is not available');
    }
    if (access === 'public') return;
    const token = bearer(request);
    if (!token)
      return sendError(reply, 'UNAUTHENTICATED', 'send Authorization: Bearer <access token or API key>');
    const principal = await res.auth.authenticate(token);
    request.principal = principal;
    if (access === 'authenticated') return;
    if (access === 'session') {
      if (principal.kind !== 'user')
        return sendError(reply, 'FORBIDDEN', 'this route needs a user session, not an API key');
      return;
    }
    const allowed =
      access === 'platform-admin'
        ? principal.kind === 'user' && principal.isPlatformAdmin
        : isPermission(access) && principal.permissions.has(access);
    if (allowed) return;
    await res.db
      .withTenant(principal.tenantId, (tx) =>
        res.audit.append(tx, principal.tenantId, {
          ...auditActor(actorOf(request)),
          action: 'access.denied',
          outcome: 'denied',
          details: { method: request.method, route: url, needs: access },
        }),
      )
      .catch((error: unknown) => request.log.error({ err: error }, 'could not audit a denied request'));
    return sendError(reply, 'FORBIDDEN', `this needs the ${access} permission`);
  });
}
