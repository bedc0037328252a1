import { conflict, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import { equalSecret, randomToken, sha256 } from '../shared/secrets.ts';
import { ScimError } from './scim-error.ts';

/**
 * SCIM bearer tokens: `scim_<12-char public prefix>_<40-char secret>`, shown once; only a SHA-256
 * of the secret is stored (like API keys). A token provisions the users and groups of one tenant.
 */

export const SCIM_TOKEN_PATTERN = /^scim_([A-Za-z0-9]{12})_([A-Za-z0-9]{40})$/;

export interface ScimTokenView {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

interface Row {
  id: string;
  name: string;
  prefix: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const toView = (r: Row): ScimTokenView => ({
  id: r.id,
  name: r.name,
  prefix: `scim_${r.prefix}`,
  createdAt: r.created_at.toISOString(),
  lastUsedAt: r.last_used_at?.toISOString() ?? null,
  revokedAt: r.revoked_at?.toISOString() ?? null,
});

export async function createScimToken(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: { name: string; createdBy?: string | undefined },
): Promise<{ scimToken: ScimTokenView; token: string }> {
  if (!input.name.trim()) throw invalid('body/name must not be blank');
  const prefix = randomToken(12);
  const secret = randomToken(40);
  return res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<Row[]>`
      insert into scim_tokens (tenant_id, name, prefix, token_hash, created_by)
      values (${tenantId}, ${input.name}, ${prefix}, ${sha256(secret)}, ${input.createdBy ?? null})
      returning id, name, prefix, created_at, last_used_at, revoked_at`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'scim_token.created',
      targetType: 'scim_token',
      targetId: row!.id,
      details: { name: input.name, prefix: `scim_${prefix}` },
    });
    return { scimToken: toView(row!), token: `scim_${prefix}_${secret}` };
  });
}

export async function listScimTokens(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined },
): Promise<Page<ScimTokenView>> {
  const after = decodeCursor(q.cursor, ['t', 'id']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<(Row & { cursor_t: string })[]>`
      select id, name, prefix, created_at, last_used_at, revoked_at, created_at::text as cursor_t
      from scim_tokens where tenant_id = ${tenantId}
        ${after ? tx`and (created_at, id) > (${after.t}::text::timestamptz, ${after.id}::uuid)` : tx``}
      order by created_at, id limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toView);
    const last = rows[q.limit - 1];
    return {
      items,
      nextCursor: rows.length > q.limit && last ? encodeCursor({ t: last.cursor_t, id: last.id }) : null,
    };
  });
}

export async function revokeScimToken(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<{ prefix: string; revoked_at: Date | null }[]>`
      select prefix, revoked_at from scim_tokens where tenant_id = ${tenantId} and id = ${id} for update`;
    if (!row) throw notFound('SCIM token');
    if (row.revoked_at) throw conflict('the SCIM token is already revoked');
    await tx`update scim_tokens set revoked_at = now() where tenant_id = ${tenantId} and id = ${id}`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'scim_token.revoked',
      targetType: 'scim_token',
      targetId: id,
      details: { prefix: `scim_${row.prefix}` },
    });
  });
}

/** Who is calling the SCIM API: the tenant and the token, as an audit actor. */
export interface ScimCaller {
  tenantId: string;
  tokenId: string;
  actor: Actor;
}

/** Authenticate a SCIM bearer token (read from the database on every request: revocation is immediate). */
export async function authenticateScim(
  res: Resources,
  bearer: string | undefined,
  info: { requestId?: string | undefined; ip?: string | undefined },
): Promise<ScimCaller> {
  const m = bearer ? SCIM_TOKEN_PATTERN.exec(bearer) : null;
  if (!m) throw new ScimError(401, 'send Authorization: Bearer <SCIM token>');
  const [prefix, secret] = [m[1]!, m[2]!];
  // The prefix is public: it finds the token; the hash comparison authenticates it.
  const [found] = await res.db.withSystemAccess(
    (tx) => tx<{ tenant_id: string }[]>`select tenant_id from scim_tokens where prefix = ${prefix}`,
  );
  if (!found) throw new ScimError(401, 'invalid SCIM token');
  const [row] = await res.db.withTenant(
    found.tenant_id,
    (tx) => tx<{ id: string; name: string; token_hash: Buffer; revoked_at: Date | null }[]>`
      select k.id, k.name, k.token_hash, k.revoked_at from scim_tokens k join tenants t on t.id = k.tenant_id
      where k.tenant_id = ${found.tenant_id} and k.prefix = ${prefix} and t.status = 'active'`,
  );
  if (!row || row.revoked_at || !equalSecret(row.token_hash, sha256(secret)))
    throw new ScimError(401, 'invalid SCIM token');
  void res.db
    .withTenant(
      found.tenant_id,
      (tx) => tx`update scim_tokens set last_used_at = now()
                 where tenant_id = ${found.tenant_id} and id = ${row.id}
                   and (last_used_at is null or last_used_at < now() - interval '1 minute')`,
    )
    .catch(() => {});
  return {
    tenantId: found.tenant_id,
    tokenId: row.id,
    actor: {
      type: 'system',
      id: row.id,
      label: `scim token ${row.name}`,
      requestId: info.requestId,
      ip: info.ip,
    },
  };
}
