import { rm } from 'node:fs/promises';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { invalid } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { exportFilePath } from './export-files.ts';

export const DATA_CLASSES = [
  'tasks',
  'events',
  'webhook_deliveries',
  'notifications',
  'llm_usage',
  'exports',
  'consents',
] as const;
export type DataClass = (typeof DATA_CLASSES)[number];

export const DATA_CLASS_DESCRIPTIONS: Record<DataClass, string> = {
  tasks: 'finished tasks (done, rejected, failed, cancelled) with their events, steps and approvals',
  events: 'received events (their task stays)',
  webhook_deliveries: 'webhook delivery records',
  notifications: 'notifications',
  llm_usage: 'LLM token usage records',
  exports: 'privacy export archives and their records',
  consents: 'superseded consent records (the newest per user and purpose is always kept)',
};

export interface RetentionPolicy {
  dataClass: DataClass;
  days: number;
  updatedAt: string;
}

export async function listRetentionPolicies(res: Resources, tenantId: string): Promise<RetentionPolicy[]> {
  const rows = await res.db.withTenant(
    tenantId,
    (tx) =>
      tx<{ data_class: DataClass; days: number; updated_at: Date }[]>`
      select data_class, days, updated_at from retention_policies where tenant_id = ${tenantId} order by data_class`,
  );
  return rows.map((r) => ({ dataClass: r.data_class, days: r.days, updatedAt: r.updated_at.toISOString() }));
}

/** Replace the tenant's retention policies (an empty list keeps everything); audited. */
export async function setRetentionPolicies(
  res: Resources,
  tenantId: string,
  actor: Actor,
  policies: { dataClass: DataClass; days: number }[],
): Promise<RetentionPolicy[]> {
  const classes = policies.map((p) => p.dataClass);
  const dup = classes.find((c, i) => classes.indexOf(c) !== i);
  if (dup) throw invalid(`policies: ${dup} appears twice`);
  await res.db.withTenant(tenantId, async (tx) => {
    await tx`delete from retention_policies where tenant_id = ${tenantId}
               and not (data_class = any(${classes}::text[]))`;
    for (const p of policies) {
      await tx`insert into retention_policies (tenant_id, data_class, days) values (${tenantId}, ${p.dataClass}, ${p.days})
               on conflict (tenant_id, data_class) do update set days = excluded.days, updated_at = now()`;
    }
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'privacy.retention_policy_set',
      targetType: 'retention_policy',
      details: { policies: Object.fromEntries(policies.map((p) => [p.dataClass, p.days])) },
    });
  });
  return listRetentionPolicies(res, tenantId);
}

/** Delete what the tenant's policies say is too old; one audited transaction. Returns rows per class. */
export async function purgeTenant(
  res: Resources,
  tenantId: string,
  actor: Actor,
  now: Date = new Date(),
): Promise<Record<string, number>> {
  const { purged, files } = await res.db.withTenant(tenantId, async (tx) => {
    const policies = await tx<{ data_class: DataClass; days: number }[]>`
      select data_class, days from retention_policies where tenant_id = ${tenantId}`;
    const purged: Record<string, number> = {};
    const files: string[] = [];
    for (const p of policies) {
      const cutoff = new Date(now.getTime() - p.days * 86_400_000).toISOString();
      const before = tx`${cutoff}::text::timestamptz`;
      let n = 0;
      switch (p.data_class) {
        case 'tasks':
          n = (
            await tx`delete from tasks where tenant_id = ${tenantId} and finished_at < ${before}
                   and status in ('done', 'rejected', 'failed', 'cancelled')`
          ).count;
          break;
        case 'events':
          n = (await tx`delete from events where tenant_id = ${tenantId} and received_at < ${before}`).count;
          break;
        case 'webhook_deliveries':
          n = (
            await tx`delete from webhook_deliveries where tenant_id = ${tenantId} and received_at < ${before}`
          ).count;
          break;
        case 'notifications':
          n = (await tx`delete from notifications where tenant_id = ${tenantId} and created_at < ${before}`)
            .count;
          break;
        case 'llm_usage':
          n = (await tx`delete from llm_usage where tenant_id = ${tenantId} and created_at < ${before}`)
            .count;
          break;
        case 'exports': {
          const gone = await tx<{ id: string }[]>`
            delete from privacy_exports where tenant_id = ${tenantId} and created_at < ${before}
              and status in ('done', 'failed') returning id`;
          files.push(...gone.map((g) => g.id));
          n = gone.length;
          break;
        }
        case 'consents':
          n = (
            await tx`delete from consents c where c.tenant_id = ${tenantId} and c.recorded_at < ${before}
                   and exists (select 1 from consents newer where newer.tenant_id = c.tenant_id and newer.user_id = c.user_id
                               and newer.purpose = c.purpose and (newer.recorded_at, newer.id) > (c.recorded_at, c.id))`
          ).count;
          break;
      }
      purged[p.data_class] = n;
    }
    if (policies.length || actor.type !== 'system') {
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'privacy.retention_purged',
        targetType: 'tenant',
        targetId: tenantId,
        details: { purged },
      });
    }
    return { purged, files };
  });
  for (const id of files) await rm(exportFilePath(res.dataDir, tenantId, id), { force: true });
  return purged;
}

/** The scheduled purge: every tenant with a retention policy. */
export async function purgeAllTenants(
  res: Resources,
  actor: Actor,
): Promise<Record<string, Record<string, number>>> {
  const tenants = await res.db.withSystemAccess(
    (tx) =>
      tx<
        { id: string }[]
      >`select id from tenants where id <> ${PLATFORM_TENANT_ID} and status = 'active' order by id`,
  );
  const out: Record<string, Record<string, number>> = {};
  for (const t of tenants) {
    const [has] = await res.db.withTenant(
      t.id,
      (tx) => tx`select 1 from retention_policies where tenant_id = ${t.id} limit 1`,
    );
    if (!has) continue;
    const purged = await purgeTenant(res, t.id, actor);
    if (Object.keys(purged).length) out[t.id] = purged;
  }
  return out;
}
