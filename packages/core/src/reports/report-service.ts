import { invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { toCsv } from './csv.ts';
import { buildReport, REPORT_KINDS, type Report, type ReportKind, type ReportQuery } from './report-data.ts';
import { renderPdf } from './report-pdf.ts';

export type ReportFormat = 'csv' | 'pdf' | 'json';

export interface RenderedReport {
  contentType: string;
  filename: string;
  body: Buffer | Report;
}

export function isReportKind(value: string): value is ReportKind {
  return (REPORT_KINDS as readonly string[]).includes(value);
}

/** An ISO 8601 time (normalised for the database), or a 400 naming the field. */
function checkTime(value: string | undefined, field: string): string | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(Date.parse(value))) {
    throw invalid(`querystring/${field} must be an ISO 8601 date or time`);
  }
  return new Date(value).toISOString();
}

/**
 * Build one compliance report of the caller's tenant in the requested format. Generating it is
 * audited (`report.generated`, with kind, format, period and row count) in the same transaction
 * that reads the data, so the report and its audit entry agree.
 */
/**
 * The tenant's members with a second factor. Factors belong to the user, not the tenant (their rows
 * are visible to the user alone), so this reads them under system access, for this tenant's members.
 */
async function membersWithMfa(res: Resources, tenantId: string): Promise<Set<string>> {
  const rows = await res.db.withSystemAccess(
    (tx) => tx<{ user_id: string }[]>`
      select m.user_id from memberships m
      where m.tenant_id = ${tenantId}
        and (exists (select 1 from user_totp t where t.user_id = m.user_id and t.confirmed_at is not null)
             or exists (select 1 from passkeys p where p.user_id = m.user_id))`,
    { tenantId },
  );
  return new Set(rows.map((r) => r.user_id));
}

export async function generateReport(
  res: Resources,
  tenantId: string,
  actor: Actor,
  kind: string,
  format: ReportFormat,
  q: ReportQuery,
): Promise<RenderedReport> {
  if (!isReportKind(kind)) throw notFound('report kind');
  q = { since: checkTime(q.since, 'since'), until: checkTime(q.until, 'until') };
  const mfaUsers = kind === 'access-review' ? await membersWithMfa(res, tenantId) : undefined;
  const report = await res.db.withTenant(tenantId, async (tx) => {
    const r = await buildReport(tx, tenantId, kind, q, mfaUsers);
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'report.generated',
      targetType: 'report',
      targetId: kind,
      details: { kind, format, since: q.since ?? null, until: q.until ?? null, rows: r.rows.length },
    });
    return r;
  });
  const stamp = report.generatedAt.slice(0, 10);
  const filename = `steward-${report.tenant.slug}-${kind}-${stamp}.${format}`;
  if (format === 'json') return { contentType: 'application/json', filename, body: report };
  if (format === 'csv') {
    const csv = toCsv(
      report.columns.map((c) => c.header),
      report.rows.map((r) => report.columns.map((c) => r[c.key])),
    );
    return { contentType: 'text/csv; charset=utf-8', filename, body: Buffer.from(csv, 'utf8') };
  }
  return { contentType: 'application/pdf', filename, body: await renderPdf(report) };
}
