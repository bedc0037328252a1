import type { Resources } from '../resources.ts';

export interface UserTenant {
  id: string;
  slug: string;
  name: string;
}

/** The active tenants a user belongs to (for the dashboard's tenant switcher). */
export async function listUserTenants(res: Resources, userId: string): Promise<UserTenant[]> {
  // System access: memberships of other tenants are invisible under any one tenant's RLS.
  return res.db.withSystemAccess(
    (tx) => tx<UserTenant[]>`
      select t.id, t.slug, t.name from memberships m join tenants t on t.id = m.tenant_id
      where m.user_id = ${userId} and m.status = 'active' and t.status = 'active'
      order by t.name, t.slug`,
    { userId },
  );
}
