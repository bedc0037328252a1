import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { AppError } from '../errors/app-error.ts';
import type { Resources } from '../resources.ts';
import { normalizeIp } from './ip-allow-list.ts';

/** The request facts a sign-in has (same shape as session-service's RequestInfo). */
interface LoginRequestInfo {
  ip?: string | null | undefined;
  requestId?: string | null | undefined;
}

/** True when the tenant's IP allow-list admits `ip` (no guard, no list, or the platform tenant: true). */
export async function loginAddressAllowed(res: Resources, tenantId: string, ip: string | null | undefined) {
  if (!res.guard || tenantId === PLATFORM_TENANT_ID || !ip) return true;
  return (await res.guard.policy(tenantId)).allowList.allows(ip);
}

/**
 * A sign-in into a tenant from an address outside its allow-list: audited in the tenant's chain
 * (auth.login, outcome denied, reason ip_not_allowed), answered 403 IP_NOT_ALLOWED. Password sign-in
 * calls this before the password is checked (the answer is the same for every account, known or
 * not, right password or not); passkey, SSO and the MFA step call it once the user is known.
 */
export async function assertLoginAddressAllowed(
  res: Resources,
  tenantId: string,
  info: LoginRequestInfo,
  who: { method: string; label?: string | undefined; userId?: string | undefined },
): Promise<void> {
  if (await loginAddressAllowed(res, tenantId, info.ip)) return;
  await auditLoginAddressRefused(res, tenantId, info, who);
  throw new AppError(
    'IP_NOT_ALLOWED',
    `the tenant's IP allow-list does not include ${normalizeIp(info.ip!)}`,
    {
      details: { ip: normalizeIp(info.ip!) },
    },
  );
}

export async function auditLoginAddressRefused(
  res: Resources,
  tenantId: string,
  info: LoginRequestInfo,
  who: { method: string; label?: string | undefined; userId?: string | undefined },
): Promise<void> {
  await res.db.withTenant(tenantId, (tx) =>
    res.audit.append(tx, tenantId, {
      actorType: who.userId ? 'user' : 'anonymous',
      ...(who.userId ? { actorId: who.userId } : {}),
      ...(who.label ? { actorLabel: who.label.slice(0, 320) } : {}),
      action: 'auth.login',
      outcome: 'denied',
      requestId: info.requestId ?? null,
      ip: info.ip ?? null,
      details: { method: who.method, reason: 'ip_not_allowed' },
    }),
  );
}
