import { AppError } from '@steward/core/errors/app-error';
import type { Refusal } from '@steward/core/guard/guard';
import { normalizeIp } from '@steward/core/guard/ip-allow-list';
import { auditActor, type Resources } from '@steward/core/resources';
import { TtlCache } from '@steward/core/shared/ttl-cache';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { actorOf } from './request-actor.ts';

function refuse(r: Refusal): AppError {
  return new AppError(r.code, r.message, { details: r.details });
}

/** A refused address is audited at most once a minute per tenant (a flood cannot flood the chain). */
const AUDIT_EVERY_MS = 60_000;

/**
 * Request quotas and IP allow-lists. The per-address quota runs before authentication (a flood of
 * bad credentials is limited too); the tenant's allow-list and quotas run once the principal is
 * known, before the body is read. `request.ip` honours STEWARD_TRUST_PROXY: X-Forwarded-For from a
 * peer that is not a trusted proxy is ignored. Install before installAuthentication.
 */
export function installGuard(app: FastifyInstance, res: Resources): void {
  const audited = new TtlCache<true>(AUDIT_EVERY_MS);
  const auditRefusal = async (request: FastifyRequest, tenantId: string) => {
    const key = `${tenantId}:${normalizeIp(request.ip)}`;
    if (audited.get(key)) return;
    audited.set(key, true);
    await res.db
      .withTenant(tenantId, (tx) =>
        res.audit.append(tx, tenantId, {
          ...auditActor(actorOf(request)),
          action: 'access.ip_not_allowed',
          outcome: 'denied',
          details: { method: request.method, route: request.routeOptions.url ?? null },
        }),
      )
      .catch((error: unknown) => request.log.error({ err: error }, 'could not audit a refused address'));
  };
  app.addHook('onRequest', async (request) => {
    const guard = res.guard;
    if (!guard || guard.limits.ipRequestsPerMinute <= 0) return;
    const refusal = await guard.checkAddress(request.ip);
    if (refusal) throw refuse(refusal);
  });
  app.addHook('preParsing', async (request, _reply, payload) => {
    const guard = res.guard;
    const principal = request.principal;
    if (!guard || !principal) return payload;
    const refusal = await guard.checkPrincipal(principal, request.ip);
    if (refusal) {
      if (refusal.code === 'IP_NOT_ALLOWED') await auditRefusal(request, principal.tenantId);
      throw refuse(refusal);
    }
    return payload;
  });
}
