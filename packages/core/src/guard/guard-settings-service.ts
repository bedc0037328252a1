import { conflict, forbidden, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import type { TenantRateLimits } from './guard.ts';
import { allowListProblems, canonicalCidr, IpAllowList, normalizeIp } from './ip-allow-list.ts';

/** Tenant settings written only through their own endpoints (validated, audited, cache dropped). */
export const GUARDED_SETTINGS = ['ipAllowList', 'rateLimits'] as const;

export interface IpAllowListView {
  entries: string[];
}

export async function getIpAllowList(res: Resources, tenantId: string): Promise<IpAllowListView> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) =>
      tx<{ allow: unknown }[]>`select settings->'ipAllowList' as allow from tenants where id = ${tenantId}`,
  );
  if (!row) throw notFound('tenant');
  return { entries: Array.isArray(row.allow) ? (row.allow as string[]) : [] };
}

/**
 * Replace the tenant's allow-list (empty: every address). A list that would shut out the caller's
 * own address is refused unless `force` is set.
 */
export async function setIpAllowList(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: { entries: string[]; force?: boolean | undefined },
): Promise<IpAllowListView> {
  const problems = allowListProblems(input.entries);
  if (problems.length) throw invalid(problems.slice(0, 5).join('; '));
  const entries = [...new Set(input.entries.map(canonicalCidr))];
  const callerIp = actor.ip ? normalizeIp(actor.ip) : undefined;
  const list = new IpAllowList(entries);
  if (!input.force && callerIp !== undefined && !list.allows(callerIp)) {
    throw conflict(
      `the list does not include your current address ${callerIp}: you would lock yourself out (send force: true to save it anyway)`,
    );
  }
  const view = await res.db.withTenant(tenantId, async (tx) => {
    // NO KEY UPDATE, not UPDATE: an audit append elsewhere holds the chain head and then takes
    // KEY SHARE on this row (its foreign key); FOR UPDATE would deadlock against it.
    const [before] = await tx<{ allow: unknown }[]>`
      select settings->'ipAllowList' as allow from tenants where id = ${tenantId} for no key update`;
    if (!before) throw notFound('tenant');
    await tx`update tenants set settings = settings || ${tx.json({ ipAllowList: entries })}, updated_at = now()
             where id = ${tenantId}`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'tenant.ip_allow_list.updated',
      targetType: 'tenant',
      targetId: tenantId,
      details: {
        before: Array.isArray(before.allow) ? before.allow : [],
        after: entries,
        forced: input.force === true && callerIp !== undefined && !list.allows(callerIp),
      },
    });
    return { entries };
  });
  res.guard?.invalidateTenant(tenantId);
  return view;
}

export interface RateLimitsView {
  /** The tenant's own values (null: the installation default). */
  requestsPerMinute: number | null;
  apiKeyRequestsPerMinute: number | null;
  /** What applies now (0: no limit). */
  effective: { requestsPerMinute: number; apiKeyRequestsPerMinute: number };
}

function view(res: Resources, stored: TenantRateLimits): RateLimitsView {
  const dflt = res.guard?.limits;
  const own = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : null);
  const requestsPerMinute = own(stored.requestsPerMinute);
  const apiKeyRequestsPerMinute = own(stored.apiKeyRequestsPerMinute);
  return {
    requestsPerMinute,
    apiKeyRequestsPerMinute,
    effective: {
      requestsPerMinute: requestsPerMinute ?? dflt?.tenantRequestsPerMinute ?? 0,
      apiKeyRequestsPerMinute: apiKeyRequestsPerMinute ?? dflt?.apiKeyRequestsPerMinute ?? 0,
    },
  };
}

export async function getRateLimits(res: Resources, tenantId: string): Promise<RateLimitsView> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) =>
      tx<{ limits: unknown }[]>`select settings->'rateLimits' as limits from tenants where id = ${tenantId}`,
  );
  if (!row) throw notFound('tenant');
  return view(res, (row.limits ?? {}) as TenantRateLimits);
}

/** Whether `value` is looser than the installation default `dflt` (0 means no limit). */
function raises(value: number | null, dflt: number): boolean {
  if (value === null || dflt === 0) return false;
  return value === 0 || value > dflt;
}

/**
 * Set the tenant's quotas (null: back to the default). Lowering is a tenant administrator's call;
 * raising above the installation default (or removing a default limit) needs a platform administrator.
 */
export async function setRateLimits(
  res: Resources,
  tenantId: string,
  actor: Actor & { isPlatformAdmin?: boolean },
  input: {
    requestsPerMinute?: number | null | undefined;
    apiKeyRequestsPerMinute?: number | null | undefined;
  },
): Promise<RateLimitsView> {
  const dflt = res.guard?.limits;
  const current = await getRateLimits(res, tenantId);
  const next = {
    requestsPerMinute:
      input.requestsPerMinute === undefined ? current.requestsPerMinute : input.requestsPerMinute,
    apiKeyRequestsPerMinute:
      input.apiKeyRequestsPerMinute === undefined
        ? current.apiKeyRequestsPerMinute
        : input.apiKeyRequestsPerMinute,
  };
  if (
    !actor.isPlatformAdmin &&
    (raises(next.requestsPerMinute, dflt?.tenantRequestsPerMinute ?? 0) ||
      raises(next.apiKeyRequestsPerMinute, dflt?.apiKeyRequestsPerMinute ?? 0))
  ) {
    throw forbidden('only a platform administrator can raise a quota above the installation default');
  }
  const result = await res.db.withTenant(tenantId, async (tx) => {
    await tx`update tenants set settings = settings || ${tx.json({ rateLimits: next })}, updated_at = now()
             where id = ${tenantId}`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'tenant.rate_limits.updated',
      targetType: 'tenant',
      targetId: tenantId,
      details: {
        before: {
          requestsPerMinute: current.requestsPerMinute,
          apiKeyRequestsPerMinute: current.apiKeyRequestsPerMinute,
        },
        after: next,
      },
    });
    return view(res, next);
  });
  res.guard?.invalidateTenant(tenantId);
  return result;
}
