import { conflict, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import { randomToken, sha256 } from '../shared/secrets.ts';
import type { Permission } from './permissions.ts';
import { assertCanGrant, getRoleByName } from './role-service.ts';

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  role: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

interface KeyRow {
  id: string;
  name: string;
  prefix: string;
  role: string;
  created_at: Date;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const toKey = (r: KeyRow): ApiKey => ({
  id: r.id,
  name: r.name,
  prefix: `stw_${r.prefix}`,
  role: r.role,
  createdAt: r.created_at.toISOString(),
  expiresAt: r.expires_at?.toISOString() ?? null,
  lastUsedAt: r.last_used_at?.toISOString() ?? null,
  revokedAt: r.revoked_at?.toISOString() ?? null,
});

/**
 * Create a key: `stw_<12-char public prefix>_<40-char secret>`. The `stw_` marker makes leaked keys
 * easy to find with secret scanners. Only a SHA-256 of the secret is stored; the key is returned
 * once, here.
 */
export async function createApiKey(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: { name: string; role: string; expiresAt?: string | undefined; createdBy?: string | undefined },
  granter?: ReadonlySet<Permission>,
): Promise<{ apiKey: ApiKey; key: string }> {
  if (input.expiresAt !== undefined && !(new Date(input.expiresAt).getTime() > Date.now())) {
    throw invalid('body/expiresAt must be in the future');
  }
  const prefix = randomToken(12);
  const secret = randomToken(40);
  return res.db.withTenant(tenantId, async (tx) => {
    const role = await getRoleByName(tx, tenantId, input.role);
    if (granter) assertCanGrant(granter, role);
    const [row] = await tx<KeyRow[]>`
      insert into api_keys (tenant_id, name, prefix, key_hash, role_id, created_by, expires_at)
      values (${tenantId}, ${input.name}, ${prefix}, ${sha256(secret)}, ${role.id}, ${input.createdBy ?? null},
              ${input.expiresAt ?? null})
      returning id, name, prefix, ${role.name}::text as role, created_at, expires_at, last_used_at, revoked_at`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'api_key.created',
      targetType: 'api_key',
      targetId: row!.id,
      details: { name: input.name, role: role.name, prefix: `stw_${prefix}` },
    });
    return { apiKey: toKey(row!), key: `stw_${prefix}_${secret}` };
  });
}

export async function listApiKeys(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined; includeRevoked?: boolean | undefined },
): Promise<Page<ApiKey>> {
  const after = decodeCursor(q.cursor, ['t', 'id']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<(KeyRow & { cursor_t: string })[]>`
      select k.id, k.name, k.prefix, r.name as role, k.created_at, k.expires_at, k.last_used_at, k.revoked_at,
             k.created_at::text as cursor_t
      from api_keys k join roles r on r.tenant_id = k.tenant_id and r.id = k.role_id
      where k.tenant_id = ${tenantId}
        ${q.includeRevoked ? tx`` : tx`and k.revoked_at is null`}
        ${after ? tx`and (k.created_at, k.id) > (${after.t}::text::timestamptz, ${after.id}::uuid)` : tx``}
      order by k.created_at, k.id limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toKey);
    const last = rows[q.limit - 1];
    return {
      items,
      nextCursor: rows.length > q.limit && last ? encodeCursor({ t: last.cursor_t, id: last.id }) : null,
    };
  });
}

export async function revokeApiKey(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
): Promise<void> {
  const prefix = await res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<{ prefix: string; revoked_at: Date | null }[]>`
      select prefix, revoked_at from api_keys where tenant_id = ${tenantId} and id = ${id} for update`;
    if (!row) throw notFound('API key');
    if (row.revoked_at) throw conflict('the API key is already revoked');
    await tx`update api_keys set revoked_at = now() where tenant_id = ${tenantId} and id = ${id}`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'api_key.revoked',
      targetType: 'api_key',
      targetId: id,
      details: { prefix: `stw_${row.prefix}` },
    });
    return row.prefix;
  });
  res.auth.invalidateApiKey(prefix);
}
