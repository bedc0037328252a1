import { randomUUID } from 'node:crypto';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { conflict, invalid, notFound } from '../errors/app-error.ts';
import { GUARDED_SETTINGS } from '../guard/guard-settings-service.ts';
import { seedBuiltinRoles } from '../identity/role-service.ts';
import { addMemberInTx } from '../identity/user-service.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { checkSessionSettings } from '../identity/session-policy.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';

export const SLUG_PATTERN = '^[a-z0-9][a-z0-9-]{1,62}$';

export interface Tenant {
  id: string;
  slug: string;
  name: string;
  status: string;
  settings: Record<string, unknown>;
  createdAt: string;
}

interface TenantRow {
  id: string;
  slug: string;
  name: string;
  status: string;
  settings: Record<string, unknown>;
  created_at: Date;
}

const toTenant = (r: TenantRow): Tenant => ({
  id: r.id,
  slug: r.slug,
  name: r.name,
  status: r.status,
  settings: r.settings,
  createdAt: r.created_at.toISOString(),
});

export interface CreateTenantInput {
  slug: string;
  name: string;
  ownerEmail: string;
  ownerPassword?: string | undefined;
  ownerName?: string | undefined;
}

/** A tenant, its built-in roles and its owner, in one transaction. */
export async function createTenant(res: Resources, actor: Actor, input: CreateTenantInput): Promise<Tenant> {
  if (!new RegExp(SLUG_PATTERN).test(input.slug)) {
    throw invalid('slug must be 2-63 characters of a-z, 0-9 and -, starting with a letter or digit');
  }
  const id = randomUUID();
  return res.db.withSystemAccess(
    async (tx) => {
      const [row] = await tx<TenantRow[]>`
        insert into tenants (id, slug, name) values (${id}, ${input.slug}, ${input.name})
        on conflict (slug) do nothing returning *`;
      if (!row) throw conflict(`a tenant with slug "${input.slug}" already exists`);
      await seedBuiltinRoles(tx, id);
      await res.audit.append(tx, id, {
        ...auditActor(actor),
        action: 'tenant.created',
        targetType: 'tenant',
        targetId: id,
        details: { slug: input.slug, name: input.name },
      });
      await addMemberInTx(res, tx, id, actor, {
        email: input.ownerEmail,
        password: input.ownerPassword,
        name: input.ownerName,
        role: 'owner',
      });
      return toTenant(row);
    },
    { tenantId: id },
  );
}

export async function findTenantBySlug(res: Resources, slug: string): Promise<Tenant | null> {
  const [row] = await res.db.withSystemAccess(
    (tx) => tx<TenantRow[]>`select * from tenants where slug = ${slug}`,
  );
  return row && row.id !== PLATFORM_TENANT_ID ? toTenant(row) : null;
}

export async function getTenantBySlug(res: Resources, slug: string): Promise<Tenant> {
  const tenant = await findTenantBySlug(res, slug);
  if (!tenant) throw notFound(`tenant "${slug}"`);
  return tenant;
}

export async function listTenants(
  res: Resources,
  q: { limit: number; cursor?: string | undefined },
): Promise<Page<Tenant>> {
  const after = decodeCursor(q.cursor, ['slug']);
  const rows = await res.db.withSystemAccess(
    (tx) => tx<TenantRow[]>`
      select * from tenants where id <> ${PLATFORM_TENANT_ID} ${after ? tx`and slug > ${after.slug}` : tx``}
      order by slug limit ${q.limit + 1}`,
  );
  const items = rows.slice(0, q.limit).map(toTenant);
  return { items, nextCursor: rows.length > q.limit ? encodeCursor({ slug: items.at(-1)!.slug }) : null };
}

export async function countTenants(res: Resources): Promise<number> {
  const [row] = await res.db.withSystemAccess(
    (tx) => tx<{ n: string }[]>`select count(*) as n from tenants where id <> ${PLATFORM_TENANT_ID}`,
  );
  return Number(row?.n ?? 0);
}

export async function getTenant(res: Resources, tenantId: string): Promise<Tenant> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) => tx<TenantRow[]>`select * from tenants where id = ${tenantId}`,
  );
  if (!row) throw notFound('tenant');
  return toTenant(row);
}

export async function updateTenant(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: { name?: string | undefined; settings?: Record<string, unknown> | undefined },
): Promise<Tenant> {
  const guarded = GUARDED_SETTINGS.filter((k) => input.settings && k in input.settings);
  if (guarded.length) throw invalid(`body/settings/${guarded[0]} is changed through its own endpoint`);
  if (input.settings) checkSessionSettings(input.settings);
  return res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<TenantRow[]>`
      update tenants set
        name = coalesce(${input.name ?? null}, name),
        settings = settings || ${tx.json((input.settings ?? {}) as never)},
        updated_at = now()
      where id = ${tenantId} returning *`;
    if (!row) throw notFound('tenant');
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'tenant.updated',
      targetType: 'tenant',
      targetId: tenantId,
      details: { name: input.name, settingsKeys: Object.keys(input.settings ?? {}) },
    });
    return toTenant(row);
  });
}
