import { toEntry, type AuditEntry, type AuditRow } from './audit-log.ts';
import { verifyChain, type VerifyResult } from './verify-chain.ts';
import type { Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';

export interface AuditQuery {
  limit: number;
  cursor?: string | undefined;
  action?: string | undefined;
  actorId?: string | undefined;
  targetId?: string | undefined;
  outcome?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
}

/** Entries, newest first, with filters. */
export async function listAudit(res: Resources, tenantId: string, q: AuditQuery): Promise<Page<AuditEntry>> {
  const before = decodeCursor(q.cursor, ['seq']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<AuditRow[]>`
      select * from audit_log where tenant_id = ${tenantId}
        ${before ? tx`and seq < ${before.seq}` : tx``}
        ${q.action ? (q.action.endsWith('.*') ? tx`and action like ${q.action.slice(0, -1) + '%'}` : tx`and action = ${q.action}`) : tx``}
        ${q.actorId ? tx`and actor_id = ${q.actorId}` : tx``}
        ${q.targetId ? tx`and target_id = ${q.targetId}` : tx``}
        ${q.outcome ? tx`and outcome = ${q.outcome}` : tx``}
        ${q.since ? tx`and at >= ${q.since}` : tx``}
        ${q.until ? tx`and at < ${q.until}` : tx``}
      order by seq desc limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toEntry);
    return { items, nextCursor: rows.length > q.limit ? encodeCursor({ seq: items.at(-1)!.seq }) : null };
  });
}

/** Verify one tenant's chain against its newest signed checkpoint. */
export async function verifyTenantAudit(res: Resources, tenantId: string): Promise<VerifyResult> {
  const checkpoint = await res.checkpoints.latest(tenantId);
  return res.db.withTenant(tenantId, (tx) => verifyChain(tx, res.master, tenantId, checkpoint));
}
