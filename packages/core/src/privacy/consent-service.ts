import { notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';

export interface ConsentRecord {
  id: string;
  userId: string;
  purpose: string;
  granted: boolean;
  source: string;
  recordedAt: string;
}

export interface ConsentState {
  /** The newest record per purpose. */
  current: ConsentRecord[];
  /** Every record, oldest first. */
  history: ConsentRecord[];
}

interface Row {
  id: string;
  user_id: string;
  purpose: string;
  granted: boolean;
  source: string;
  recorded_at: Date;
}

const toRecord = (r: Row): ConsentRecord => ({
  id: r.id,
  userId: r.user_id,
  purpose: r.purpose,
  granted: r.granted,
  source: r.source,
  recordedAt: r.recorded_at.toISOString(),
});

/** Record that a member granted or withdrew consent for a purpose (append-only; audited). */
export async function recordConsent(
  res: Resources,
  tenantId: string,
  actor: Actor,
  userId: string,
  input: { purpose: string; granted: boolean; source: string },
): Promise<ConsentRecord> {
  return res.db.withTenant(tenantId, async (tx) => {
    const [m] = await tx`select 1 from memberships where tenant_id = ${tenantId} and user_id = ${userId}`;
    if (!m) throw notFound('user');
    const [row] = await tx<Row[]>`
      insert into consents (tenant_id, user_id, purpose, granted, source)
      values (${tenantId}, ${userId}, ${input.purpose}, ${input.granted}, ${input.source}) returning *`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: input.granted ? 'privacy.consent_granted' : 'privacy.consent_withdrawn',
      targetType: 'user',
      targetId: userId,
      details: { purpose: input.purpose, source: input.source, consentId: row!.id },
    });
    return toRecord(row!);
  });
}

export async function listConsents(res: Resources, tenantId: string, userId: string): Promise<ConsentState> {
  return res.db.withTenant(tenantId, async (tx) => {
    const [m] = await tx`select 1 from memberships where tenant_id = ${tenantId} and user_id = ${userId}`;
    const rows = await tx<Row[]>`
      select * from consents where tenant_id = ${tenantId} and user_id = ${userId} order by recorded_at, id`;
    if (!m && rows.length === 0) throw notFound('user');
    const history = rows.map(toRecord);
    const latest = new Map<string, ConsentRecord>();
    for (const r of history) latest.set(r.purpose, r);
    return { current: [...latest.values()].sort((a, b) => a.purpose.localeCompare(b.purpose)), history };
  });
}
