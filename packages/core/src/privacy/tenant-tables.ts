import type { Tx } from '@steward/db/database';

/** A table holding tenant rows, as the runtime role sees it (catalog, not a hand-kept list). */
export interface TenantTable {
  name: string;
  canUpdate: boolean;
  canDelete: boolean;
  /** text, varchar and jsonb columns the runtime role may read. */
  textColumns: { name: string; type: 'text' | 'jsonb' }[];
}

/** Tables the privacy code never rewrites wholesale: the audit chain has its own redaction. */
const SPECIAL = new Set(['audit_log', 'audit_heads', 'tenants']);

/**
 * Every table in schema public with a tenant_id column, read from the catalog so that tables added
 * by later migrations are exported and erased without anyone remembering to list them here.
 */
export async function tenantTables(tx: Tx): Promise<TenantTable[]> {
  const rows = await tx<
    { table_name: string; column_name: string; data_type: string; can_update: boolean; can_delete: boolean }[]
  >`
    select c.table_name, c.column_name, c.data_type,
      has_table_privilege(current_user, format('public.%I', c.table_name), 'UPDATE') as can_update,
      has_table_privilege(current_user, format('public.%I', c.table_name), 'DELETE') as can_delete
    from information_schema.columns c
    join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
    where c.table_schema = 'public' and t.table_type = 'BASE TABLE'
      and exists (select 1 from information_schema.columns k
                  where k.table_schema = 'public' and k.table_name = c.table_name and k.column_name = 'tenant_id')
    order by c.table_name, c.ordinal_position`;
  const out = new Map<string, TenantTable>();
  for (const r of rows) {
    if (SPECIAL.has(r.table_name)) continue;
    let t = out.get(r.table_name);
    if (!t) {
      t = { name: r.table_name, canUpdate: r.can_update, canDelete: r.can_delete, textColumns: [] };
      out.set(r.table_name, t);
    }
    if (r.data_type === 'text' || r.data_type === 'character varying')
      t.textColumns.push({ name: r.column_name, type: 'text' });
    if (r.data_type === 'jsonb') t.textColumns.push({ name: r.column_name, type: 'jsonb' });
  }
  return [...out.values()];
}

/** A POSIX regular expression matching `s` literally. */
export function regexLiteral(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}
